"""The host input of the 1D pre-training methods: a sensor corpus's normalised windows in
shuffled batches, with a position that resumes exactly.

`pretraining_corpus(config.data)` reads the corpus the config names: `data.dataset` is one
registry dataset or several joined by ',' (`daphnet,basicmotions`), `data.data_dir` their
folders in the same order (',' separated; '' for BasicMotions, which ships with sktime), cut
into `data.seconds`-long windows at `data.sample_rate` with 50 % overlap.

`HostWindows` keeps the contract of `images.pipeline.HostBatches`, so the same
`ImageBatches` reader turns its batches into sharded global arrays: `batch_size`, `start`,
`records_per_epoch`, and iteration yielding `(batch, {"epoch", "position"})` forever. Each
process takes an equal share of the windows, every process-count-th one (the remainder is
left out, as the image reader drops it), reshuffled every epoch with a seed from (seed,
epoch, process); a batch never spans two epochs. The whole corpus sits in host memory, as the corpus function keeps it.
"""

from __future__ import annotations

from collections.abc import Iterator

import jax
import ml_collections
import numpy as np

from img2imu_jax.imu.sensor_corpus import SensorCorpus, load_sensor_corpus


def pretraining_corpus(data: ml_collections.ConfigDict) -> SensorCorpus:
    """The windows of the dataset(s) `data.dataset` names, for pre-training."""
    names = [name.strip() for name in data.dataset.split(",")]
    folders = [folder.strip() for folder in data.data_dir.split(",")] if data.data_dir else []
    if folders and len(folders) != len(names):
        raise ValueError(f"data.data_dir lists {len(folders)} folder(s) for {len(names)} "
                         f"dataset(s) in data.dataset={data.dataset!r}; give one per dataset "
                         "(empty for basicmotions), ',' separated")
    sources = [(name, folder or None) for name, folder in zip(names, folders or [""] * len(names))]
    return load_sensor_corpus(sources, seconds=data.seconds, sample_rate=data.sample_rate,
                              generic_sample_rate=data.generic_sample_rate or None)


class HostWindows:
    """This process's float32 batches `[batch_size, time, 3]`, each with the position after it."""

    def __init__(self, windows: np.ndarray, *, batch_size: int, seed: int,
                 state: dict[str, int] | None = None, process_index: int | None = None,
                 process_count: int | None = None):
        self.process_index = jax.process_index() if process_index is None else process_index
        process_count = jax.process_count() if process_count is None else process_count
        share = len(windows) // process_count
        # Every process-count-th window, so each share draws on every dataset of the corpus.
        self.windows = windows[self.process_index::process_count][:share]
        self.batch_size, self.seed = batch_size, seed
        self.start = dict(state) if state is not None else {"epoch": 0, "position": 0}
        if share < batch_size:
            raise ValueError(f"this process's share of the corpus has {share} windows, fewer "
                             f"than one batch of {batch_size}")

    @property
    def records_per_epoch(self) -> int:
        return len(self.windows)

    def __iter__(self) -> Iterator[tuple[np.ndarray, dict[str, int]]]:
        epoch, position = self.start["epoch"], self.start["position"]
        while True:
            order = np.random.default_rng([self.seed, epoch, self.process_index]).permutation(
                len(self.windows))
            for begin in range(position, len(order) - self.batch_size + 1, self.batch_size):
                end = begin + self.batch_size
                yield self.windows[order[begin:end]], {"epoch": epoch, "position": end}
            epoch, position = epoch + 1, 0
