"""`img2imu prepare`: a resized copy of a TFDS image dataset, so pre-training decodes small images.

ImageNet's full-size JPEGs cost a host core ~10 ms each to decode; at 96 × 128 the same image
decodes in well under 1 ms. The copy is itself a TFDS dataset (`NAME_HxW`, same splits and
labels), written shard by shard: each shard covers a fixed slice of the source split, process
`p` of `P` writes shards `p, p+P, ...`, finished shards are kept when a run is interrupted and
restarted, and process 0 writes the dataset's metadata once every shard exists.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import tensorflow as tf
import tensorflow_datasets as tfds
from etils import epath
from tqdm import tqdm

from img2imu_jax.images.decode import DEFAULT_SIZE, decode_and_resize
from img2imu_jax.images.sources import load_builder
from img2imu_jax.images.tfds_writer import ShardedDatasetWriter

EXAMPLES_PER_SHARD = 2048
JPEG_QUALITY = 95

log = logging.getLogger(__name__)


def prepared_name(dataset: str, image_size: tuple[int, int]) -> str:
    """`imagenet2012` at 96 × 128 → `imagenet2012_96x128` (any folder path → its last part)."""
    base = "".join(c if c.isalnum() else "_" for c in Path(dataset).name).lower()
    return f"{base}_{image_size[0]}x{image_size[1]}"


def prepare(
    dataset: str,
    data_dir: str | os.PathLike | None,
    out_dir: str | os.PathLike,
    *,
    image_size: tuple[int, int] = DEFAULT_SIZE,
    image_key: str = "image",
    examples_per_shard: int = EXAMPLES_PER_SHARD,
    process_index: int = 0,
    process_count: int = 1,
    wait_seconds: float = 24 * 3600,
) -> epath.Path:
    """Writes this process's shards of the resized copy; returns the copy's builder folder."""
    if not 0 <= process_index < process_count:
        raise ValueError(f"process index {process_index} is not in [0, {process_count})")
    # Building the source itself (imagenet2012 from its archives) is single-process only.
    source = load_builder(dataset, data_dir, build_if_missing=process_count == 1)
    if image_key not in source.info.features:
        raise ValueError(f"{dataset} has no feature {image_key!r}: {list(source.info.features)}")
    keep_label = "label" in source.info.features
    features = {"image": tfds.features.Image(shape=(*image_size, 3), encoding_format="jpeg")}
    if keep_label:
        features["label"] = source.info.features["label"]
    writer = ShardedDatasetWriter(
        out_dir, prepared_name(dataset, image_size), tfds.features.FeaturesDict(features)
    )
    sizes = {name: split.num_examples for name, split in source.info.splits.items()}
    shard_counts = {name: max(1, -(-n // examples_per_shard)) for name, n in sizes.items()}
    if writer.finalized():
        log.info("%s is already complete", writer.builder_dir)
        return writer.builder_dir
    every_shard = [(split, i) for split in sorted(shard_counts) for i in range(shard_counts[split])]
    mine = [
        (split, index)
        for number, (split, index) in enumerate(every_shard)
        if number % process_count == process_index
        and not writer.shard_done(split, index, shard_counts[split])
    ]
    todo = sum(
        min(sizes[split], (index + 1) * examples_per_shard) - index * examples_per_shard
        for split, index in mine
    )
    with tqdm(total=todo, unit="img", desc=f"prepare {writer.name} [{process_index}]") as bar:
        for split, index in mine:
            start = index * examples_per_shard
            stop = min(sizes[split], start + examples_per_shard)
            examples, skipped = _resized_examples(
                source, f"{split}[{start}:{stop}]", start, image_size, image_key, keep_label, bar
            )
            writer.write_shard(split, index, shard_counts[split], examples, skipped=skipped)
            if skipped:
                log.warning("%s[%s]: skipped %d undecodable image(s): source examples %s",
                            dataset, split, len(skipped), skipped[:10])
    if process_index == 0:
        _wait_for_shards(writer, shard_counts, wait_seconds)
        skipped = writer.finalize(shard_counts, f"{dataset} resized to {image_size} (H, W)")
        log.info("wrote %s; undecodable images skipped per split: %s", writer.builder_dir, skipped)
    return writer.builder_dir


def _resized_examples(
    source: tfds.core.DatasetBuilder,
    split: str,
    first: int,
    image_size: tuple[int, int],
    image_key: str,
    keep_label: bool,
    bar: tqdm,
) -> tuple[list[dict], list[str]]:
    """Decodes, resizes and re-encodes one slice in parallel; names the source examples lost."""
    records = source.as_dataset(
        split=split, shuffle_files=False, decoders={image_key: tfds.decode.SkipDecoding()},
        read_config=tfds.ReadConfig(try_autocache=False),
    )

    def resize(number: tf.Tensor, example: dict) -> dict:
        image = decode_and_resize(example[image_key], image_size)
        resized = {"number": number, "image": tf.io.encode_jpeg(image, quality=JPEG_QUALITY)}
        if keep_label:
            resized["label"] = example["label"]
        return resized

    resized = (
        records.enumerate()
        .map(resize, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        .ignore_errors()
    )
    examples, expected = [], 0
    skipped: list[str] = []
    base = split.split("[")[0]
    for example in resized.as_numpy_iterator():
        number = int(example.pop("number"))
        skipped += [f"{base}[{first + n}]" for n in range(expected, number)]
        bar.update(number + 1 - expected)
        expected = number + 1
        examples.append(example)
    total = source.info.splits[split].num_examples
    skipped += [f"{base}[{first + n}]" for n in range(expected, total)]
    bar.update(total - expected)
    return examples, skipped


def _wait_for_shards(
    writer: ShardedDatasetWriter, shard_counts: dict[str, int], wait_seconds: float
) -> None:
    """Process 0 waits for the other processes' shards before writing the metadata."""
    deadline = time.monotonic() + wait_seconds
    while missing := writer.missing_shards(shard_counts):
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"{writer.builder_dir}: {len(missing)} shard(s) still missing after "
                f"{wait_seconds:.0f} s (first: {missing[0]}); rerun the processes that own them"
            )
        log.info("waiting for %d shard(s) from other processes", len(missing))
        time.sleep(min(30.0, wait_seconds))
