"""Benchmark the pre-training step: steps/s, images/s and views/s per device, and MFU.

For each recipe (the paper's MoCo ResNet-18 at 96 × 128, SimCLR's ResNet-50 at 224 × 224) it
times the jitted, donated `shard_map` step exactly as `img2imu pretrain` builds it, first on
device-resident uint8 batches (the step alone), then fed by the real host pipeline
(`ImageBatches` over a prepared copy of the bundled photos). FLOPs per step come from XLA's cost
analysis of the compiled (per-device) step; MFU divides achieved FLOP/s by the device's peak
dense bf16 rate. Step times: pipelined mean, host dispatch per step, and p50/p90/p99 with a wait
after each step. The real input cycles the 22 bundled photos up to the full batch. Goals per H100: paper config >= 20,000 images/s; ResNet-50 224²
NT-Xent >= 3,500 images/s (7,000 views/s). On a CPU, pass small --batch values.

    .venv/bin/python benchmarks/train_step.py [--batch-paper 256] [--batch-r50 256] [--steps 20]
"""

from __future__ import annotations

import argparse
import datetime
import itertools
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
from jax.sharding import NamedSharding, PartitionSpec

from img2imu_jax.config import load_config
from img2imu_jax.images.pipeline import HostBatches, ImageBatches
from img2imu_jax.images.prepare import prepare
from img2imu_jax.images.sources import BUNDLED_PHOTOS, load_builder
from img2imu_jax.parallel import DATA_AXIS, data_mesh
from img2imu_jax.methods import compute_dtype
from img2imu_jax.pretrain import setup

CONFIGS = pathlib.Path(__file__).resolve().parents[1] / "configs"
# Peak dense FLOP/s per device: (bf16, fp32) from the vendors' data sheets.
PEAK = {"H100": (989e12, 67e12), "H200": (989e12, 67e12), "A100": (312e12, 19.5e12)}
GOALS = {"paper": 20_000.0, "simclr_r50": 3_500.0}


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipes", nargs="+", default=list(GOALS), choices=list(GOALS))
    parser.add_argument("--batch-paper", type=int, default=256)
    parser.add_argument("--batch-r50", type=int, default=256)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--width-r50", type=int, default=64, help="narrow it on a CPU")
    parser.add_argument("--width-paper", type=int, default=64, help="narrow it on a CPU")
    parser.add_argument("--size-r50", type=int, default=224, help="shrink it on a CPU")
    parser.add_argument("--out", type=pathlib.Path,
                        default=pathlib.Path("benchmarks/out/train_step.json"))
    return parser.parse_args(argv)


def recipe(name: str, batch: int, args: argparse.Namespace) -> Any:
    if name == "paper":
        return load_config(CONFIGS / "img2imu_paper.py", [
            f"batch_size={batch}", f"moco.queue_size={max(4096, batch)}",
            f"model.width={args.width_paper}"])
    size = args.size_r50
    return load_config(CONFIGS / "simclr_r50_imagenet.py", [
        f"batch_size={batch}", f"data.image_size=({size},{size})", f"model.width={args.width_r50}",
        "augment.spec='mocov2'",
    ])


def peak_flops() -> float | None:
    """The device's dense bf16 peak (MFU is quoted against it whatever the compute dtype)."""
    kind = jax.devices()[0].device_kind
    for name, (bf16_peak, _) in PEAK.items():
        if name in kind:
            return bf16_peak
    return None


class CycledBatches:
    """Real decoded host batches of `batch_size`, cycling a source that may hold fewer images.

    Duck-types `HostBatches` for `ImageBatches`: the bundled photos (22) are fewer than one
    default batch, so batches are filled by repeating the decoded stream.
    """

    def __init__(self, host: HostBatches, batch_size: int):
        self.host, self.batch_size, self.start = host, batch_size, host.start

    def __iter__(self):
        pending: list[np.ndarray] = []
        for images, state in self.host:
            pending.append(images)
            while sum(len(p) for p in pending) >= self.batch_size:
                whole = np.concatenate(pending)
                pending = [whole[self.batch_size:]]
                yield whole[: self.batch_size], state


def _percentiles(seconds: list[float]) -> dict[str, float]:
    return {f"p{q}_s": float(np.percentile(seconds, q)) for q in (50, 90, 99)}


def _timed(compiled, state, batches, steps: int) -> tuple[Any, dict[str, Any]]:
    """Pipelined throughput (no per-step wait), host dispatch time per step, then per-step
    latencies with a wait after each for p50/p90/p99."""
    dispatch = []
    start = time.perf_counter()
    for _ in range(steps):
        batch = next(batches)
        t = time.perf_counter()
        state, metrics = compiled(state, batch)
        dispatch.append(time.perf_counter() - t)
    jax.block_until_ready(metrics)
    pipelined = (time.perf_counter() - start) / steps
    latencies = []
    for _ in range(steps):
        batch = next(batches)
        t = time.perf_counter()
        state, metrics = compiled(state, batch)
        jax.block_until_ready(metrics)
        latencies.append(time.perf_counter() - t)
    return state, {"step_s": pipelined, "dispatch_s_per_step": float(np.mean(dispatch)),
                   **_percentiles(latencies)}


def measure(name: str, config, steps: int, prepared_dir: pathlib.Path) -> dict[str, Any]:
    mesh = data_mesh()
    trainer = setup(config, mesh, steps_per_epoch=1000, total_steps=10_000)
    state = trainer.state
    height, width = config.data.image_size
    images = jax.device_put(
        np.random.default_rng(0).integers(0, 256, (config.batch_size, height, width, 3),
                                          dtype=np.uint8),
        NamedSharding(mesh, PartitionSpec(DATA_AXIS)),
    )
    start = time.perf_counter()
    compiled = trainer.step_fn.lower(state, images).compile()
    compile_s = time.perf_counter() - start
    cost = compiled.cost_analysis()
    # XLA's cost analysis of an SPMD program is already per device: no further division.
    flops = float((cost[0] if isinstance(cost, list) else cost).get("flops", 0.0))
    memory = compiled.memory_analysis()
    state, metrics = compiled(state, images)
    jax.block_until_ready(metrics)
    state, resident = _timed(compiled, state, itertools.repeat(images), steps)

    builder = load_builder(f"{BUNDLED_PHOTOS}_{height}x{width}", prepared_dir)
    local_batch = config.batch_size // jax.process_count()
    host = HostBatches(builder, batch_size=min(local_batch, 8), seed=0,
                       image_size=(height, width), shuffle_buffer=256)
    with ImageBatches(CycledBatches(host, local_batch), mesh,
                      prefetch=config.data.prefetch) as batches:
        state, metrics = compiled(state, next(batches))
        jax.block_until_ready(metrics)
        state, fed = _timed(compiled, state, batches, steps)

    devices = jax.device_count()
    peak = peak_flops()
    stats = jax.devices()[0].memory_stats() or {}
    result = {"batch": config.batch_size, "image_size": [height, width],
              "depth": config.model.depth, "width": config.model.width,
              "dtype": compute_dtype(config.model.dtype).name, "method": config.method,
              "compile_s": compile_s, "flops_per_step_per_device": flops, "devices": devices,
              "temp_bytes_per_device": memory.temp_size_in_bytes if memory else None,
              "peak_bytes_in_use": stats.get("peak_bytes_in_use")}
    for label, timing in (("device_resident", resident), ("input_pipeline", fed)):
        seconds = timing["step_s"]
        per_device = config.batch_size / devices / seconds
        result[label] = {**timing, "steps_per_s": 1 / seconds,
                         "images_per_s_per_device": per_device,
                         "views_per_s_per_device": 2 * per_device,
                         "mfu_bf16_peak": flops / seconds / peak if peak and flops else None}
    return result


def main(argv: list[str] | None = None) -> None:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    tf.config.set_visible_devices([], "GPU")
    kind = jax.devices()[0].device_kind
    results = {}
    with tempfile.TemporaryDirectory() as scratch:
        scratch = pathlib.Path(scratch)
        load_builder(BUNDLED_PHOTOS, scratch / "tfds")
        for name in args.recipes:
            batch = args.batch_paper if name == "paper" else args.batch_r50
            config = recipe(name, batch, args)
            prepare(BUNDLED_PHOTOS, scratch / "tfds", scratch / "prepared",
                    image_size=tuple(config.data.image_size))
            results[name] = measure(name, config, args.steps, scratch / "prepared")
    print(f"device: {jax.device_count()} x {kind} ({jax.default_backend()}), jax {jax.__version__}")
    print(f"{'recipe':<12}{'feed':<17}{'steps/s':>9}{'img/s/dev':>11}{'views/s/dev':>13}"
          f"{'MFU':>8}{'p50 ms':>9}{'p99 ms':>9}{'disp ms':>9}")
    for name, r in results.items():
        for feed in ("device_resident", "input_pipeline"):
            x = r[feed]
            mfu = x["mfu_bf16_peak"]
            mfu = f"{100 * mfu:.1f}%" if mfu is not None else "n/a"
            print(f"{name:<12}{feed:<17}{x['steps_per_s']:>9.2f}"
                  f"{x['images_per_s_per_device']:>11.1f}{x['views_per_s_per_device']:>13.1f}"
                  f"{mfu:>8}{1e3 * x['p50_s']:>9.1f}{1e3 * x['p99_s']:>9.1f}"
                  f"{1e3 * x['dispatch_s_per_step']:>9.2f}")
        goal = GOALS[name]
        print(f"  goal per H100: >= {goal:,.0f} images/s (batch {r['batch']}, "
              f"{r['image_size'][0]}x{r['image_size'][1]}, width {r['width']}, "
              f"{r['dtype']}, compile {r['compile_s']:.1f} s, "
              f"{r['flops_per_step_per_device'] / 1e9:.1f} GFLOP/step/device)")
    record = {"timestamp_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(),
              "argv": sys.argv, "device_kind": kind, "backend": jax.default_backend(),
              "jax": jax.__version__, "cpu_count": os.cpu_count(), "results": results,
              "goals_images_per_s_per_h100": GOALS}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
