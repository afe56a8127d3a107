"""Which sensor-aware augmentations, how strong? Each op and parameter varied, judged by the probe.

Pre-trains IMG2IMU (MoCo, Shuffle BN) on the 1000-photo sample once per variant of the
sensor-aware set, every variant with the same steps, seed and budget, and reads the
BasicMotions few-shot probe (`probe/f1_*`, macro-F1 on held-out BasicMotions cases, averaged
over the probe's folds) at the last step. BasicMotions is no dataset `benchmarks/transfer.py`
reports, so choosing the defaults here never looks at WISDM 2019's or Daphnet's test folds.
`--seeds 0 1 2` repeats each variant with those seeds (config.seed: the initialisation, the
photo order and every augmentation draw): the spread over seeds is the noise against which a
difference between variants has to be read.

    PYTHONPATH=. .venv/bin/python benchmarks/augment_ablation.py \\
        --photos ../shared/datasets/imagenet_sample_1000/imagenet_sample_1000.tar \\
        --workdir runs/ablation --width 16 --batch 64 --queue 1024 --steps 300 --seeds 0 \\
        --out benchmarks/out/augment_ablation.json

`--variants a,b` runs a subset (several processes can share one workdir: each variant is its
own run directory, and a finished one is read back instead of trained again).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from transfer import (METHODS, SENSOR_AWARE, add_pretrain_arguments,  # noqa: E402  benchmarks/
                      photo_folder, pretrain, suffix)

OPS = SENSOR_AWARE.split("|")


def _without(op: str) -> str:
    return "|".join(o for o in OPS if o != op)


# name → overrides on top of MoCo + the default sensor-aware set.
VARIANTS: dict[str, tuple[str, ...]] = {
    "default": (),
    "with_crop": (f"augment.spec=crop|{SENSOR_AWARE}",),
    **{f"no_{op}": (f"augment.spec={_without(op)}",) for op in OPS},
    "translate_quarter": ("augment.params.translate_x_max_fraction=0.25",),
    "permute_2_segments": ("augment.params.permute_x_segments=2",),
    "permute_8_segments": ("augment.params.permute_x_segments=8",),
    "permute_equal": ("augment.params.permute_x_min_share=1.0",),
    "hue_60_degrees": ("augment.params.hue_max_degrees=60.0",),
    "jitter_x3": ("augment.params.jitter_amplitude=0.26",),
    "jitter_half": ("augment.params.jitter_amplitude=0.0433",),
    "all_p_half": tuple(f"augment.params.{op}_p=0.5" for op in OPS),
}


def last_probe(run: dict) -> dict[str, float]:
    return run["probe"][max(run["probe"])]


def summary(runs: dict, names: list[str]) -> str:
    """A Markdown table: per variant, the last probe's F1 per seed, its mean gain over the
    same seed's random-init encoder (the step-0 probe), and its mean difference from `default`
    at the same seeds (paired: the seed's share of the spread cancels)."""
    keys = list(next(iter(runs.values()))["probe"][0])
    lines = ["| variant | overrides | seeds | last top-1 | " + " | ".join(
        f"{k.removeprefix('probe/f1_')} F1 per seed (%) | gain over random init | vs default"
        for k in keys) + " |", "|---|---|---:|---:|" + "---|---:|---:|" * len(keys)]
    default = {run["seed"]: run for run in runs.values() if run["variant"] == "default"}
    for name in names:
        mine = [run for run in runs.values() if run["variant"] == name]
        cells = [name, " ".join(VARIANTS[name]) or "—", str(len(mine)),
                 f"{np.mean([run['last_top1'] for run in mine]):.3f}"]
        for key in keys:
            last = [last_probe(run)[key] for run in mine]
            gain = [end - run["probe"][0][key] for end, run in zip(last, mine)]
            paired = [end - last_probe(default[run["seed"]])[key]
                      for end, run in zip(last, mine) if run["seed"] in default]
            cells += [" / ".join(f"{100 * v:.1f}" for v in last), f"{100 * np.mean(gain):+.1f}",
                      f"{100 * np.mean(paired):+.1f}" if paired and name != "default" else "—"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, default=Path("runs/ablation"))
    parser.add_argument("--variants", default=",".join(VARIANTS),
                        help=f"comma-separated, among {', '.join(VARIANTS)}")
    add_pretrain_arguments(parser, steps=300, width=16)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out/augment_ablation.json"))
    args = parser.parse_args()
    names = args.variants.split(",")
    unknown = set(names) - set(VARIANTS)
    if unknown:
        parser.error(f"unknown variants {sorted(unknown)}; known: {', '.join(VARIANTS)}")
    logging.basicConfig(level=logging.WARNING)
    args.workdir = args.workdir.resolve()
    photos = photo_folder(args.photos, args.workdir)
    base = (*METHODS["img2imu"], f"evals.probe.every={args.steps}")
    runs = {}
    for name in names:
        for seed in args.seeds:
            run_name = f"{name}{suffix(seed)}"
            run = pretrain(args.workdir / "pretrain" / run_name,
                           (*base, f"seed={seed}", *VARIANTS[name]), args, photos)
            runs[run_name] = {"variant": name, "seed": seed, **run}
            wall = f", {run['wall_s']:.0f} s" if run["wall_s"] else ""
            print(f"{run_name}: step {run['steps']}, top-1 {run['last_top1']:.3f}, "
                  f"probe {last_probe(run)}{wall}", flush=True)
    print(summary(runs, names))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"date": time.strftime("%Y-%m-%d"),
                                    "args": {k: str(v) for k, v in vars(args).items()},
                                    "variants": {n: VARIANTS[n] for n in names},
                                    "runs": runs}, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
