"""Benchmark the pre-training step: steps/s, images/s and views/s per device, and MFU.

For each recipe (the paper's MoCo ResNet-18 at 96 × 128, SimCLR's ResNet-50 at 224 × 224) it
times the jitted, donated `shard_map` step exactly as `img2imu pretrain` builds it, first on
device-resident uint8 batches (the step alone), then fed by the real host pipeline
(`ImageBatches` over a prepared copy of the bundled photos). FLOPs per step come from XLA's cost
analysis of the compiled step; MFU divides achieved FLOP/s by the device's peak dense bf16 rate
(bf16 configs) or fp32 rate. Goals per H100: paper config >= 20,000 images/s; ResNet-50 224²
NT-Xent >= 3,500 images/s (7,000 views/s). On a CPU, pass small --batch values.

    .venv/bin/python benchmarks/train_step.py [--batch-paper 256] [--batch-r50 256] [--steps 20]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import sys
import tempfile
import time
from typing import Any

import jax
import numpy as np
import tensorflow as tf
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec

from img2imu_jax import optim
from img2imu_jax.augment import make_augment
from img2imu_jax.config import load_config
from img2imu_jax.images.pipeline import HostBatches, ImageBatches
from img2imu_jax.images.prepare import prepare
from img2imu_jax.images.sources import BUNDLED_PHOTOS, load_builder
from img2imu_jax.parallel import DATA_AXIS, data_mesh
from img2imu_jax.pretrain import build, initial_state, per_device_step, shard_step

CONFIGS = pathlib.Path(__file__).resolve().parents[1] / "img2imu_jax" / "configs"
# Peak dense FLOP/s per device: (bf16, fp32) from the vendors' data sheets.
PEAK = {"H100": (989e12, 67e12), "H200": (989e12, 67e12), "A100": (312e12, 19.5e12)}
GOALS = {"paper": 20_000.0, "simclr_r50": 3_500.0}


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch-paper", type=int, default=256)
    parser.add_argument("--batch-r50", type=int, default=256)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--width-r50", type=int, default=64, help="narrow it on a CPU")
    parser.add_argument("--out", type=pathlib.Path,
                        default=pathlib.Path("benchmarks/out/train_step.json"))
    return parser.parse_args(argv)


def recipe(name: str, batch: int, width: int) -> Any:
    if name == "paper":
        return load_config(CONFIGS / "img2imu_paper.py", [f"batch_size={batch}",
                                                          f"moco.queue_size={max(4096, batch)}"])
    return load_config(CONFIGS / "simclr_r50_imagenet.py", [
        f"batch_size={batch}", "data.image_size=(224,224)", f"model.width={width}",
        "augment.spec='mocov2'",
    ])


def peak_flops(bf16: bool) -> float | None:
    kind = jax.devices()[0].device_kind
    for name, (bf16_peak, fp32_peak) in PEAK.items():
        if name in kind:
            return bf16_peak if bf16 else fp32_peak
    return None


def measure(name: str, config, steps: int, prepared_dir: pathlib.Path) -> dict[str, Any]:
    mesh = data_mesh()
    model = build(config)
    schedule = optim.learning_rate_schedule(config.optim.base_lr, batch_size=config.batch_size,
                                            scaling="none", warmup_steps=0, total_steps=10_000)
    tx = optim.make_optimizer(config.optim.name, schedule, weight_decay=config.optim.weight_decay)
    step = shard_step(per_device_step(config, nnx.graphdef(model), tx, schedule,
                                      make_augment(config.augment.spec)), mesh)
    state = jax.device_put(initial_state(config, model, tx), NamedSharding(mesh, PartitionSpec()))
    height, width = config.data.image_size
    images = jax.device_put(
        np.random.default_rng(0).integers(0, 256, (config.batch_size, height, width, 3),
                                          dtype=np.uint8),
        NamedSharding(mesh, PartitionSpec(DATA_AXIS)),
    )
    start = time.perf_counter()
    compiled = step.lower(state, images).compile()
    compile_s = time.perf_counter() - start
    cost = compiled.cost_analysis()
    flops = float((cost[0] if isinstance(cost, list) else cost).get("flops", 0.0))
    state, metrics = compiled(state, images)
    jax.block_until_ready(metrics)
    start = time.perf_counter()
    for _ in range(steps):
        state, metrics = compiled(state, images)
    jax.block_until_ready(metrics)
    resident = (time.perf_counter() - start) / steps

    builder = load_builder(f"{BUNDLED_PHOTOS}_{height}x{width}", prepared_dir)
    host = HostBatches(builder, batch_size=config.batch_size // jax.process_count(), seed=0,
                       image_size=(height, width), shuffle_buffer=256)
    with ImageBatches(host, mesh) as batches:
        state, metrics = compiled(state, next(batches))
        jax.block_until_ready(metrics)
        start = time.perf_counter()
        for _ in range(steps):
            state, metrics = compiled(state, next(batches))
        jax.block_until_ready(metrics)
    fed = (time.perf_counter() - start) / steps

    devices = jax.device_count()
    peak = peak_flops(config.model.bf16)
    result = {"batch": config.batch_size, "image_size": [height, width],
              "depth": config.model.depth, "width": config.model.width,
              "bf16": config.model.bf16, "method": config.method, "compile_s": compile_s,
              "flops_per_step": flops, "devices": devices}
    for label, seconds in (("device_resident", resident), ("input_pipeline", fed)):
        per_device = config.batch_size / devices / seconds
        result[label] = {"step_s": seconds, "steps_per_s": 1 / seconds,
                         "images_per_s_per_device": per_device,
                         "views_per_s_per_device": 2 * per_device,
                         "mfu": flops / devices / seconds / peak if peak and flops else None}
    return result


def main(argv: list[str] | None = None) -> None:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    tf.config.set_visible_devices([], "GPU")
    kind = jax.devices()[0].device_kind
    results = {}
    with tempfile.TemporaryDirectory() as scratch:
        scratch = pathlib.Path(scratch)
        load_builder(BUNDLED_PHOTOS, scratch / "tfds")
        for name, batch in (("paper", args.batch_paper), ("simclr_r50", args.batch_r50)):
            config = recipe(name, batch, args.width_r50)
            prepare(BUNDLED_PHOTOS, scratch / "tfds", scratch / "prepared",
                    image_size=tuple(config.data.image_size))
            results[name] = measure(name, config, args.steps, scratch / "prepared")
    print(f"device: {jax.device_count()} x {kind} ({jax.default_backend()}), jax {jax.__version__}")
    print(f"{'recipe':<12}{'feed':<17}{'steps/s':>9}{'img/s/dev':>11}{'views/s/dev':>13}"
          f"{'MFU':>8}")
    for name, r in results.items():
        for feed in ("device_resident", "input_pipeline"):
            x = r[feed]
            mfu = f"{100 * x['mfu']:.1f}%" if x["mfu"] is not None else "n/a"
            print(f"{name:<12}{feed:<17}{x['steps_per_s']:>9.2f}"
                  f"{x['images_per_s_per_device']:>11.1f}{x['views_per_s_per_device']:>13.1f}"
                  f"{mfu:>8}")
        goal = GOALS[name]
        print(f"  goal per H100: >= {goal:,.0f} images/s (batch {r['batch']}, "
              f"{r['image_size'][0]}x{r['image_size'][1]}, width {r['width']}, "
              f"compile {r['compile_s']:.1f} s, {r['flops_per_step'] / 1e9:.1f} GFLOP/step)")
    record = {"timestamp_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(),
              "argv": sys.argv, "device_kind": kind, "backend": jax.default_backend(),
              "jax": jax.__version__, "cpu_count": os.cpu_count(), "results": results,
              "goals_images_per_s_per_h100": GOALS}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
