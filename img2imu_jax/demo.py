"""`img2imu demo`: the main job end to end on real data every machine has, offline.

1. Pre-train a narrow ResNet-18 with MoCo on the bundled photos twice: with the paper's
   sensor-aware augmentations (IMG2IMU) and with MoCo v2's (the paper's "MoCo" baseline).
2. Evaluate both encoders and a randomly initialised one on BasicMotions (smartwatch data
   bundled with sktime) with the paper's protocol at small scale.
3. Write `WORKDIR/report/`: report.md with the results and every figure, and metrics.json.

Each stage reuses what a previous run with the same workdir finished: a pre-training run
whose last checkpoint exists is not repeated, an evaluation whose configuration is unchanged
is read back. `quick=True` shrinks everything to seconds for the test suite; its numbers mean
nothing.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

from img2imu_jax import reports
from img2imu_jax.checkpoint import CHECKPOINTS, finished_steps
from img2imu_jax.config import RECIPES, load_config
from img2imu_jax.finetune.config import validate_finetune
from img2imu_jax.finetune.results import load_encoder, run as run_protocol
from img2imu_jax.reports.demo import write_report

CONFIGS = RECIPES
PRETRAIN_CONFIG, FINETUNE_CONFIG = "demo.py", "demo_finetune.py"
ENCODERS = {  # report name → (workdir name, augmentation spec)
    "IMG2IMU (sensor-aware augs)": ("img2imu", "translate_x|permute_x|hue|jitter"),
    "MoCo (MoCo-v2 augs)": ("mocov2", "mocov2"),
}
RANDOM = "random init"
QUICK_PRETRAIN = ("total_steps=2", "batch_size=8", "model.width=4", "moco.queue_size=16",
                  "moco.bn_group_size=4", "checkpoint_every=2", "log_every=1")
QUICK_FINETUNE = ("grid_nfft=(64,)", "grid_gaps=(8,)", "epochs=2", "shots=(1,10)",
                  "folds=3", "finetune.epochs=1", "finetune.head_epochs=1")


def run(workdir: str | os.PathLike, *, quick: bool = False,
        configs: str | os.PathLike = CONFIGS,
        reference_window: str | os.PathLike | None = None) -> dict:
    """Runs the three stages into `workdir`; returns what metrics.json holds.
    `reference_window`, the paper authors' sample window (`jogging.csv`, their rendering
    beside it), adds a check of our rendering against theirs to the report."""
    workdir, configs = Path(workdir), Path(configs)
    for name in (PRETRAIN_CONFIG, FINETUNE_CONFIG):
        if not (configs / name).is_file():
            raise ValueError(f"{configs / name} not found: the demo reads its recipes from the "
                             "bundled recipes (or pass --configs DIR)")
    _check_mode(workdir, quick)
    started = time.perf_counter()

    print(f"[1/3] pre-training on the bundled photos, twice -> {workdir / 'pretrain'}")
    pretrained = {}
    for title, (folder, spec) in ENCODERS.items():
        config = load_config(configs / PRETRAIN_CONFIG,
                             [f"augment.spec={spec}", *(QUICK_PRETRAIN if quick else ())])
        run_dir = workdir / "pretrain" / folder
        if config.total_steps in finished_steps(run_dir / CHECKPOINTS):
            print(f"      {title}: finished earlier, reusing {run_dir}")
        else:
            print(f"      {title}: MoCo, {config.total_steps} steps of {config.batch_size} "
                  f"views, ResNet-{config.model.depth} width {config.model.width}, aug {spec!r}")
            from img2imu_jax.pretrain import train  # the trainer pulls in TensorFlow

            quiet = logging.getLogger("img2imu_jax.images")  # 22 photos: an epoch a step
            level = quiet.level
            quiet.setLevel(logging.WARNING)
            try:
                train(config, run_dir)
            finally:
                quiet.setLevel(level)
        pretrained[title] = (config, run_dir)

    print(f"      ({time.perf_counter() - started:.0f} s so far)")
    print(f"[2/3] few-shot evaluation on BasicMotions -> {workdir / 'finetune'}")
    pre_config = next(iter(pretrained.values()))[0]
    ft_config = load_config(configs / FINETUNE_CONFIG, QUICK_FINETUNE if quick else (),
                            checks=validate_finetune)
    ft_config.model.depth, ft_config.model.width = pre_config.model.depth, pre_config.model.width
    record = _evaluate(ft_config, pretrained, workdir / "finetune")

    print(f"      ({time.perf_counter() - started:.0f} s so far)")
    print(f"[3/3] report -> {workdir / 'report'}")
    metrics = write_report(workdir, pretrained, ft_config, record, random=RANDOM,
                           reference_window=Path(reference_window) if reference_window else None)
    print(reports.results_markdown(record), end="")
    print(f"Report: {workdir / 'report' / 'report.md'} "
          f"({time.perf_counter() - started:.0f} s this run)")
    return metrics


def _check_mode(workdir: Path, quick: bool) -> None:
    """A quick run's tiny models must never be resumed by a full run, or the reverse."""
    marker = workdir / "demo_mode.json"
    if marker.is_file() and json.loads(marker.read_text())["quick"] != quick:
        raise ValueError(f"{workdir} holds a {'full' if quick else 'quick'} demo run; "
                         "use another --workdir")
    workdir.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps({"quick": quick}) + "\n")


def _evaluate(config, pretrained: dict, out: Path) -> dict:
    """The fine-tuning protocol (`finetune.results.run`) on the three encoders, or its earlier record when nothing changed."""
    stamp = {"config": config.to_dict(),
             "checkpoints": {t: finished_steps(d / CHECKPOINTS)[-1:] for t, (_, d)
                             in pretrained.items()}}
    stamp_path, results_path = out / "demo_stamp.json", out / "results.json"
    if (results_path.is_file() and stamp_path.is_file()
            and json.loads(stamp_path.read_text()) == json.loads(json.dumps(stamp))):
        print(f"      finished earlier, reusing {results_path}")
        return json.loads(results_path.read_text())
    encoders = {title: load_encoder(config, str(run_dir / CHECKPOINTS))
                for title, (_, run_dir) in pretrained.items()}
    encoders[RANDOM] = load_encoder(config, None)
    print(f"      {', '.join(encoders)}: linear evaluation at {tuple(config.shots)} shots, "
          f"full fine-tune at {tuple(config.finetune_shots)}, {config.folds} case-wise folds")
    record = run_protocol(config, out, encoders)
    stamp_path.write_text(json.dumps(stamp, indent=2) + "\n")
    return record
