"""The host input pipeline: a TFDS split → global uint8 image batches sharded over `'data'`.

The host only reads, decodes and resizes; everything random (augmentation) happens on the
device. Each process reads its own even share of the split, shuffled with a seed derived from
(seed, epoch, process), so a run is reproducible. The position — epoch and how many records of
this process's shuffled share were consumed — is a small dict saved with a checkpoint;
restoring it recreates the same stream and skips the consumed records before decoding, so the
next batches are exactly those an uninterrupted run would have seen.

Undecodable images are dropped after decoding and counted (they show up as gaps in the record
numbers), so a corrupt file never stops training and never disappears silently.
"""

from __future__ import annotations

import concurrent.futures
import logging
import queue
import threading
from collections.abc import Iterator
from typing import Any

import jax
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds
from jax.sharding import Mesh

from img2imu_jax.images.decode import DEFAULT_SIZE, decode_and_resize
from img2imu_jax.parallel import batch_sharding

log = logging.getLogger(__name__)


class HostBatches:
    """This process's uint8 batches `[batch_size, H, W, 3]` as numpy, each with the position after it.

    Iterating yields `(images, state)` forever, epoch after epoch, starting at `state`.
    """

    def __init__(
        self,
        builder: tfds.core.DatasetBuilder,
        *,
        batch_size: int,
        seed: int,
        split: str = "train",
        image_size: tuple[int, int] = DEFAULT_SIZE,
        image_key: str = "image",
        shuffle_buffer: int = 16_384,
        state: dict[str, int] | None = None,
        process_index: int | None = None,
        process_count: int | None = None,
    ):
        self.process_index = jax.process_index() if process_index is None else process_index
        process_count = jax.process_count() if process_count is None else process_count
        self.batch_size, self.seed = batch_size, seed
        self.builder, self.split = builder, split
        self.process_split = tfds.split_for_jax_process(
            split, process_index=self.process_index, process_count=process_count,
            drop_remainder=True,
        )
        self.image_size, self.image_key = tuple(image_size), image_key
        self.shuffle_buffer = shuffle_buffer
        self.start = dict(state) if state is not None else {"epoch": 0, "position": 0}
        self.skipped = 0
        if self.records_per_epoch < batch_size:
            raise ValueError(
                f"{builder.name}/{split}: this process's share has {self.records_per_epoch} "
                f"images, fewer than one batch of {batch_size}"
            )

    @property
    def records_per_epoch(self) -> int:
        """Records in this process's share of the split (before dropping undecodable ones)."""
        return self.builder.info.splits[self.process_split].num_examples

    def __iter__(self) -> Iterator[tuple[np.ndarray, dict[str, int]]]:
        """Epoch after epoch without a stall between them: once the records left in an epoch
        fit in the shuffle buffer, the next epoch's pipeline starts filling its own buffer, so
        its first batch is ready when the last of this epoch is taken (rebuilding it at the
        boundary cost ~1 s of refill per epoch). The two buffers overlap only while this one
        drains."""
        epoch, position = self.start["epoch"], self.start["position"]
        batches = _Started(self._epoch(epoch, position))
        while True:
            upcoming = None
            for records, images in batches:
                self._count_skipped(epoch, position, records)
                position = int(records[-1]) + 1
                if upcoming is None and self.records_per_epoch - position <= self.shuffle_buffer:
                    upcoming = _Started(self._epoch(epoch + 1, 0))
                yield images, {"epoch": epoch, "position": position}
            log.info("process %d: finished epoch %d of %s/%s", self.process_index, epoch,
                     self.builder.name, self.split)
            epoch, position = epoch + 1, 0
            batches = upcoming or _Started(self._epoch(epoch, 0))

    def _epoch(self, epoch: int, start: int) -> tf.data.Dataset:
        """This process's records for `epoch`, numbered in shuffled order, from record `start`."""
        seed = int(np.random.SeedSequence([self.seed, epoch, self.process_index]).generate_state(1)[0])
        options = tf.data.Options()
        options.deterministic = True
        read_config = tfds.ReadConfig(shuffle_seed=seed, options=options, try_autocache=False)
        records = self.builder.as_dataset(
            split=self.process_split, shuffle_files=True, read_config=read_config,
            decoders={self.image_key: tfds.decode.SkipDecoding()},
        )
        numbered = (
            records.map(lambda example: example[self.image_key])
            .shuffle(self.shuffle_buffer, seed=seed, reshuffle_each_iteration=False)
            .enumerate()
            .skip(start)
        )
        if self.presized:
            batches = numbered.batch(self.batch_size, drop_remainder=True).map(
                self._decode_batch, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True
            )
        else:
            size = self.image_size
            batches = (
                numbered.map(lambda number, encoded: (number, decode_and_resize(encoded, size)),
                             num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
                .ignore_errors()
                .batch(self.batch_size, drop_remainder=True)
            )
        return batches.prefetch(tf.data.AUTOTUNE)

    @property
    def presized(self) -> bool:
        """Whether every stored image already has the target size, as `img2imu prepare` writes.

        TFDS checked each such image when it was written, so they are decoded a batch at a
        time, which is several times faster than one image at a time.
        """
        return self.builder.info.features[self.image_key].shape == (*self.image_size, 3)

    def _decode_batch(self, numbers: tf.Tensor, encoded: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        signature = tf.TensorSpec((*self.image_size, 3), tf.uint8)
        images = tf.map_fn(
            lambda one: tf.ensure_shape(
                tf.io.decode_image(one, channels=3, expand_animations=False), signature.shape
            ),
            encoded, fn_output_signature=signature,
        )
        return numbers, images

    def _count_skipped(self, epoch: int, position: int, records: np.ndarray) -> None:
        end = int(records[-1]) + 1
        missing = end - position - len(records)
        if missing:
            self.skipped += missing
            numbers = sorted(set(range(position, end)) - set(records.tolist()))
            log.warning(
                "process %d, epoch %d: skipped %d undecodable image(s) (records %s of this "
                "process's shuffled share); %d skipped so far",
                self.process_index, epoch, missing, numbers[:10], self.skipped,
            )


class _Started:
    """A dataset's numpy batches whose first one is fetched on a thread from the start."""

    def __init__(self, dataset: tf.data.Dataset):
        self._batches = dataset.as_numpy_iterator()
        self._first = concurrent.futures.Future()
        threading.Thread(target=self._fetch_first, name="next-epoch", daemon=True).start()

    def _fetch_first(self) -> None:
        try:
            self._first.set_result(next(self._batches, None))
        except BaseException as error:  # raised where the batches are taken
            self._first.set_exception(error)

    def __iter__(self) -> Iterator[Any]:
        first = self._first.result()
        if first is not None:
            yield first
            yield from self._batches


class ImageBatches(Iterator[jax.Array]):
    """Global batches `uint8 [global_batch, H, W, 3]` sharded over `'data'`, prefetched.

    A reader thread turns each process's host batches into one global `jax.Array` and stays
    `prefetch` batches ahead, so the step never waits on a copy. `state()` is the position
    after the last batch returned. `close()` (or a `with` block) stops the thread.
    """

    def __init__(self, host: HostBatches, mesh: Mesh, *, prefetch: int = 2):
        self.host = host
        self.global_batch_size = host.batch_size * jax.process_count()
        if self.global_batch_size % mesh.size:
            raise ValueError(
                f"global batch {self.global_batch_size} does not split over {mesh.size} devices"
            )
        self._sharding = batch_sharding(mesh)
        self._state = dict(host.start)
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, prefetch))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._fill, name="image-batches", daemon=True)
        self._thread.start()

    def state(self) -> dict[str, int]:
        """Where the next batch starts: `{"epoch": e, "position": records consumed in e}`."""
        return dict(self._state)

    def __next__(self) -> jax.Array:
        item = self._queue.get()
        if isinstance(item, BaseException):
            raise item
        batch, self._state = item
        return batch

    def close(self) -> None:
        self._stop.set()
        while self._thread.is_alive():
            try:
                self._queue.get(timeout=0.1)
            except queue.Empty:
                pass
            self._thread.join(timeout=0.1)

    def __enter__(self) -> "ImageBatches":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def _fill(self) -> None:
        try:
            for images, state in self.host:
                batch = jax.make_array_from_process_local_data(self._sharding, images)
                if not self._put((batch, state)):
                    return
        except BaseException as error:  # handed to the consumer, which re-raises it
            self._put(error)

    def _put(self, item: object) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False
