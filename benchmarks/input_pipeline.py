"""Benchmark the image input path: host decoding from full-size JPEGs and from a prepared copy,
and the device-side augmentation's time per batch.

Host figures are steady-state images/s of `HostBatches` (this process's uint8 96 × 128 batches)
measured inside one epoch, after the shuffle buffer has filled, divided by the CPU count for
images/s per core. Full-size JPEGs are the real ImageNet sample in shared/ when it is beside
the checkout (else the bundled photos at ImageNet's typical 500 × 375). The prepared copy is
what `img2imu prepare` writes, replicated to enough records that the measurement never crosses
an epoch. Goal: >= 2,000 images/s per core from the prepared copy.

    .venv/bin/python benchmarks/input_pipeline.py [--out benchmarks/out/input_pipeline.json]
"""

from __future__ import annotations

import argparse
import datetime
import io
import itertools
import json
import os
import pathlib
import sys
import tarfile
import tempfile
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds
from PIL import Image

from img2imu_jax.augment import make_augment
from img2imu_jax.images.pipeline import HostBatches
from img2imu_jax.images.prepare import prepare
from img2imu_jax.images.sources import bundled_photo_paths
from img2imu_jax.images.tfds_writer import ShardedDatasetWriter

GOAL_PER_CORE = 2000.0
SAMPLE_TAR = pathlib.Path("shared/datasets/imagenet_sample_1000/imagenet_sample_1000.tar")
AUGMENT_SPECS = ("translate_x|permute_x|hue|jitter", "mocov2", "all")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=128, help="host batch size")
    parser.add_argument("--full-records", type=int, default=3000)
    parser.add_argument("--prepared-records", type=int, default=40_000)
    parser.add_argument("--measure-images", type=int, default=15_000)
    parser.add_argument("--boundary-records", type=int, default=24_576,
                        help="records of the set read across epoch boundaries (more than the shuffle buffer)")
    parser.add_argument("--augment-batch", type=int, default=256)
    parser.add_argument("--workdir", type=pathlib.Path, default=None,
                        help="where the benchmark datasets go (default: a temporary folder)")
    parser.add_argument("--out", type=pathlib.Path,
                        default=pathlib.Path("benchmarks/out/input_pipeline.json"))
    return parser.parse_args(argv)


def full_size_jpegs() -> tuple[list[bytes], str]:
    """Real full-size JPEG bytes: the shared ImageNet sample if present, else bundled photos."""
    for folder in (pathlib.Path.cwd(), *pathlib.Path.cwd().parents):
        if (folder / SAMPLE_TAR).is_file():
            with tarfile.open(folder / SAMPLE_TAR) as tar:
                return [tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()], str(
                    folder / SAMPLE_TAR)
    photos = []
    for path in bundled_photo_paths():
        buffer = io.BytesIO()
        Image.open(path).convert("RGB").resize((500, 375)).save(buffer, format="JPEG", quality=90)
        photos.append(buffer.getvalue())
    return photos, "bundled photos at 500x375"


def write_dataset(root: pathlib.Path, name: str, encoded: list[bytes], records: int,
                  shape: tuple) -> tfds.core.DatasetBuilder:
    """A TFDS dataset of `records` images cycling through `encoded` (bytes stored as they are)."""
    features = tfds.features.FeaturesDict(
        {"image": tfds.features.Image(shape=shape, encoding_format="jpeg")}
    )
    writer = ShardedDatasetWriter(root, name, features)
    per_shard = 2048
    count = -(-records // per_shard)
    cycle = itertools.cycle(encoded)
    for index in range(count):
        size = min(per_shard, records - index * per_shard)
        writer.write_shard("train", index, count,
                           ({"image": next(cycle)} for _ in range(size)))
    writer.finalize({"train": count}, f"benchmark {name}")
    return tfds.builder_from_directory(writer.builder_dir)


def host_rate(builder: tfds.core.DatasetBuilder, batch: int, images: int) -> dict[str, float]:
    """Steady-state images/s of HostBatches within one epoch (after the shuffle buffer fills)."""
    stream = iter(HostBatches(builder, batch_size=batch, seed=0))
    for _ in range(5):
        next(stream)
    start, seen = time.perf_counter(), 0
    while seen < images:
        seen += len(next(stream)[0])
    seconds = time.perf_counter() - start
    return {"images": seen, "seconds": seconds, "images_per_s": seen / seconds,
            "images_per_s_per_core": seen / seconds / os.cpu_count()}


def epoch_boundaries(builder: tfds.core.DatasetBuilder, batch: int, epochs: int = 3
                     ) -> dict[str, Any]:
    """Seconds the consumer waits for each batch over `epochs` epochs (every epoch refills the
    shuffle buffer): the first batch of every later epoch, against the median batch. The first
    epoch's fill is start-up, not a boundary."""
    host = HostBatches(builder, batch_size=batch, seed=0)
    stream = iter(host)
    _, state = next(stream)
    waits: list[tuple[int, float]] = []
    while state["epoch"] < epochs:
        start = time.perf_counter()
        _, state = next(stream)
        waits.append((state["epoch"], time.perf_counter() - start))
    firsts = {e: w for e, w in reversed(waits)}  # the first wait seen in each epoch
    boundary = [firsts[e] for e in range(1, epochs + 1) if e in firsts]
    return {"records": host.records_per_epoch, "batch": batch,
            "median_wait_s": float(np.median([w for _, w in waits])),
            "boundary_wait_s": boundary}


def augment_time(spec: str, batch: int) -> dict[str, float]:
    """Milliseconds per batch of the jitted device augmentation (uint8 in, float32 out)."""
    augment = make_augment(spec)

    @jax.jit
    def step(key: jax.Array, images: jax.Array) -> jax.Array:
        return augment(key, images.astype(jnp.float32) / 255.0)

    images = jax.device_put(
        np.random.default_rng(0).integers(0, 256, (batch, 96, 128, 3), dtype=np.uint8)
    )
    key = jax.random.key(0)
    jax.block_until_ready(step(key, images))
    times = []
    for i in range(10):
        start = time.perf_counter()
        jax.block_until_ready(step(jax.random.fold_in(key, i), images))
        times.append(time.perf_counter() - start)
    median = float(np.median(times))
    return {"batch": batch, "ms_per_batch": 1e3 * median, "images_per_s": batch / median}


def main(argv: list[str] | None = None) -> None:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    tf.config.set_visible_devices([], "GPU")  # TensorFlow stays on the host
    with tempfile.TemporaryDirectory() as scratch:
        root = args.workdir or pathlib.Path(scratch)
        encoded, source = full_size_jpegs()
        full = write_dataset(root / "tfds", "full_size", encoded, args.full_records,
                             (None, None, 3))
        start = time.perf_counter()
        prepared_dir = prepare("full_size", root / "tfds", root / "prepared")
        prepare_seconds = time.perf_counter() - start
        small = [ex["image"] for ex in tfds.as_numpy(tfds.builder_from_directory(
            prepared_dir).as_dataset(split="train", decoders={"image": tfds.decode.SkipDecoding()}))]
        prepared = write_dataset(root / "tfds", "prepared", small[: len(encoded)],
                                 args.prepared_records, (96, 128, 3))
        results = {
            "full_size": host_rate(full, args.batch, min(args.measure_images, 2000)),
            "prepared": host_rate(prepared, args.batch, args.measure_images),
            "epoch_boundaries": epoch_boundaries(
                write_dataset(root / "tfds", "boundary", small[: len(encoded)],
                              args.boundary_records, (96, 128, 3)), args.batch),
            "prepare_command": {"images": args.full_records, "seconds": prepare_seconds,
                                "images_per_s_per_core":
                                args.full_records / prepare_seconds / os.cpu_count()},
        }
    augment = {spec: augment_time(spec, args.augment_batch) for spec in AUGMENT_SPECS}
    per_core = results["prepared"]["images_per_s_per_core"]
    record: dict[str, Any] = {
        "timestamp_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(),
        "args": {k: str(v) if isinstance(v, pathlib.Path) else v for k, v in vars(args).items()},
        "full_size_source": source,
        "versions": {"jax": jax.__version__, "tensorflow": tf.__version__,
                     "tensorflow_datasets": tfds.__version__, "numpy": np.__version__},
        "device": {"backend": jax.default_backend(), "kind": jax.devices()[0].device_kind,
                   "cpu_count": os.cpu_count()},
        "host": results,
        "augment": augment,
        "goal_prepared_images_per_s_per_core": GOAL_PER_CORE,
        "pass_prepared": per_core >= GOAL_PER_CORE,
    }
    print(f"host: {os.cpu_count()} CPU cores; full-size JPEGs from {source}")
    print(f"{'host input (HostBatches, uint8 96x128)':<44}{'images/s':>10}{'per core':>10}")
    for name in ("full_size", "prepared"):
        r = results[name]
        print(f"  {name:<42}{r['images_per_s']:>10.0f}{r['images_per_s_per_core']:>10.0f}")
    r = results["epoch_boundaries"]
    print(f"  epoch boundaries ({r['records']} records, batch {r['batch']}): first batch of "
          f"each new epoch waited {', '.join(f'{1e3 * w:.0f}' for w in r['boundary_wait_s'])} ms, "
          f"median batch {1e3 * r['median_wait_s']:.0f} ms")
    r = results["prepare_command"]
    print(f"  {'img2imu prepare (one-off, full-size in)':<42}"
          f"{r['images'] / r['seconds']:>10.0f}{r['images_per_s_per_core']:>10.0f}")
    verdict = "PASS" if record["pass_prepared"] else "MISS"
    print(f"goal: >= {GOAL_PER_CORE:.0f} images/s per core from the prepared copy: {verdict}")
    print(f"\ndevice augmentation on {record['device']['kind']} ({jax.default_backend()}), "
          f"batch {args.augment_batch} of 96x128:")
    for spec, a in augment.items():
        print(f"  {spec:<40}{a['ms_per_batch']:>8.2f} ms/batch{a['images_per_s']:>10.0f} images/s")
    print("fraction of a training step: benchmarks/train_step.py measures the step itself")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
