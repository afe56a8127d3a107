"""Writing a TFDS dataset shard by shard, so that big copies resume and run on many processes.

The layout is TFDS's own (`dataset_info.json`, `features.json`,
`NAME-SPLIT.tfrecord-XXXXX-of-YYYYY`), so `tfds.builder_from_directory(builder_dir)` and
`tfds.builder(NAME, data_dir=...)` read the result. Each shard goes to a temporary name and is
renamed once complete, with a small JSON record of what it holds beside it: a finished shard is
never rewritten, an interrupted one is simply redone. On cloud storage (`gs://`, through
`etils.epath`) a shard is written to a local temporary file and uploaded whole, which is atomic
there: an object appears only once its upload completes.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable

import tensorflow as tf
import tensorflow_datasets as tfds
from etils import epath
from tensorflow_datasets.core import naming

from img2imu_jax.paths import is_remote, user_path

VERSION = "1.0.0"


class ShardedDatasetWriter:
    """Writes one TFDS dataset `name` (version 1.0.0) under `data_dir/name/1.0.0`."""

    def __init__(self, data_dir: str | os.PathLike, name: str, features: tfds.features.FeaturesDict):
        self.name = name
        self.features = features
        self.builder_dir = user_path(data_dir, what="data dir") / name / VERSION

    def shard_path(self, split: str, index: int, count: int) -> epath.Path:
        template = naming.ShardedFileTemplate(
            data_dir=self.builder_dir, dataset_name=self.name, split=split,
            filetype_suffix="tfrecord",
        )
        return epath.Path(template.sharded_filepath(shard_index=index, num_shards=count))

    def shard_done(self, split: str, index: int, count: int) -> bool:
        return self.shard_path(split, index, count).is_file()

    def write_shard(
        self, split: str, index: int, count: int, examples: Iterable[dict], *, skipped: list = ()
    ) -> int:
        """Writes the examples (feature dicts) as one shard; returns how many it holds.

        `skipped` names source examples that could not be read, kept in the shard's record so
        the loss is never silent.
        """
        path = self.shard_path(split, index, count)
        path.parent.mkdir(parents=True, exist_ok=True)
        remote = is_remote(path)
        # Locally the temporary folder sits beside the shard, so that the rename is atomic.
        with tempfile.TemporaryDirectory(prefix=".partial-",
                                         dir=None if remote else path.parent) as local:
            partial = epath.Path(local) / path.name
            written, size = self._write_records(partial, examples)
            _record_path(path).write_text(json.dumps(
                {"examples": written, "bytes": size, "skipped": list(skipped)}))
            if remote:
                partial.copy(path, overwrite=True)
            else:
                partial.replace(path)
        return written

    def _write_records(self, path: epath.Path, examples: Iterable[dict]) -> tuple[int, int]:
        """Serialized examples into a local TFRecord file; returns (count, bytes)."""
        written = 0
        with tf.io.TFRecordWriter(os.fspath(path)) as writer:
            for example in examples:
                writer.write(self.features.serialize_example(example))
                written += 1
        return written, os.path.getsize(path)

    def missing_shards(self, shard_counts: dict[str, int]) -> list[tuple[str, int]]:
        return [
            (split, index)
            for split, count in shard_counts.items()
            for index in range(count)
            if not self.shard_done(split, index, count)
        ]

    def finalize(self, shard_counts: dict[str, int], description: str) -> dict[str, int]:
        """Writes dataset_info.json once every shard exists; returns examples skipped per split."""
        missing = self.missing_shards(shard_counts)
        if missing:
            raise ValueError(f"{self.builder_dir}: shards still missing: {missing[:5]}")
        split_infos, skipped = [], {}
        for split, count in shard_counts.items():
            records = [
                json.loads(_record_path(self.shard_path(split, i, count)).read_text())
                for i in range(count)
            ]
            template = naming.ShardedFileTemplate(
                data_dir=self.builder_dir, dataset_name=self.name, split=split,
                filetype_suffix="tfrecord",
            )
            split_infos.append(tfds.core.SplitInfo(
                name=split, shard_lengths=[r["examples"] for r in records],
                num_bytes=sum(r["bytes"] for r in records), filename_template=template,
            ))
            skipped[split] = sum(len(r["skipped"]) for r in records)
        identity = tfds.core.DatasetIdentity(
            name=self.name, version=tfds.core.Version(VERSION),
            data_dir=os.fspath(self.builder_dir), module_name="img2imu_jax",
        )
        info = tfds.core.DatasetInfo(
            builder=identity, description=description, features=self.features,
            split_dict=tfds.core.SplitDict(split_infos),
        )
        info.write_to_directory(self.builder_dir)
        return skipped

    def finalized(self) -> bool:
        return (self.builder_dir / "dataset_info.json").is_file()


def _record_path(shard: epath.Path) -> epath.Path:
    return shard.with_name(shard.name + ".json")
