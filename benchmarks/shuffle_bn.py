"""MoCo's BatchNorm variants on a short real pre-training: what the query encoder should use.

Runs `img2imu pretrain`'s trainer (`pretrain.train`) once per variant on the same photos,
seed and steps — (a) no Shuffle BN (global BN for keys and queries, the step before Shuffle BN),
(b) Shuffle BN for the keys and global BN for the queries, (c) Shuffle BN for the keys and
ghost groups for the queries — and prints each one's contrastive loss and top-1 along the run
and its steady step time (the cost of the shuffle and the groups), measured in the same run.
A pretext whose top-1 rises fastest with unshuffled BN is the shortcut Shuffle BN removes.

    .venv/bin/python benchmarks/shuffle_bn.py --photos DIR_OF_JPEGS --steps 100

`--photos` defaults to the bundled photos; the shared 1000-photo ImageNet sample unpacked into a
folder is the intended input. JSON: `benchmarks/out/shuffle_bn.json`.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import tempfile
from pathlib import Path

VARIANTS = {
    "no_shuffle": ["moco.shuffle_bn=False"],
    "shuffle_keys_global_queries": ["moco.shuffle_bn=True", "moco.query_bn='global'"],
    "shuffle_keys_grouped_queries": ["moco.shuffle_bn=True", "moco.query_bn='groups'"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", default="bundled_photos")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--group", type=int, default=8)
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--image-size", default="(48,64)")
    parser.add_argument("--queue", type=int, default=256)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--out", default="benchmarks/out/shuffle_bn.json")
    args = parser.parse_args()

    import jax

    from img2imu_jax.config import load_config
    from img2imu_jax.pretrain import train

    recipe = Path(__file__).resolve().parents[1] / "configs" / "img2imu_paper.py"
    common = [f"data.dataset={args.photos}", f"total_steps={args.steps}", "log_every=10",
              f"checkpoint_every={args.steps}", f"batch_size={args.batch}",
              f"moco.bn_group_size={args.group}", f"model.width={args.width}",
              f"data.image_size={args.image_size}", f"moco.queue_size={args.queue}",
              "data.shuffle_buffer=1024", "optim.warmup_epochs=0.0"]
    results = {}
    with tempfile.TemporaryDirectory() as scratch:
        for name in args.variants.split(","):
            config = load_config(recipe, common + [f"data.data_dir={scratch}/tfds",
                                                   *VARIANTS[name]])
            workdir = Path(scratch) / name
            train(config, workdir)
            lines = (workdir / "metrics.jsonl").read_text().splitlines()
            rows = [json.loads(line) for line in lines]
            times = [r["step_time_s"] for r in rows[2:] if "step_time_s" in r]
            results[name] = {
                "steps": [r["step"] for r in rows], "loss": [r["loss"] for r in rows],
                "top1": [r["contrastive_top1"] for r in rows],
                "median_step_time_s": statistics.median(times) if times else None,
            }
    print(f"{'variant':32s} " + " ".join(f"{s:>11d}" for s in results[name]["steps"]))
    for name, result in results.items():
        print(f"{name:32s} " + " ".join(f"{l:5.2f}/{t:.2f}" for l, t in
                                        zip(result["loss"], result["top1"])))
    for name, result in results.items():
        print(f"{name:32s} median step {result['median_step_time_s']:.3f} s")
    record = {"utc": datetime.datetime.now(datetime.timezone.utc).isoformat(),
              "args": vars(args), "device": str(jax.devices()[0].device_kind),
              "jax": jax.__version__, "results": results}
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    Path(args.out).write_text(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
