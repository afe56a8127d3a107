"""Unlabelled accelerometer windows for pre-training a 1D encoder on sensor data.

The windows are cut exactly as the evaluation protocol cuts its windows (`imu.windows`: each
recording resampled to `sample_rate`, `seconds`-long windows with 50 % overlap by default, none
straddling a gap), but labels play no part: every sample of every recording counts, including
those a loader marks unlabelled (annotations a pre-training corpus does not need). One corpus,
and so one model, per window length.

The corpus keeps its per-axis mean and standard deviation (over every sample of every window,
population std) so the same normalisation can be saved with a checkpoint and applied to
downstream windows with `normalise`.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence

import numpy as np

from img2imu_jax.imu.recordings import IMUDataset
from img2imu_jax.imu.registry import load_dataset
from img2imu_jax.imu.validation import AXIS_NAMES
from img2imu_jax.imu.windows import WINDOW_OVERLAP, make_windows


@dataclasses.dataclass(frozen=True)
class SensorCorpus:
    """`windows` float32 `[N, time, 3]` as recorded (not normalised); `mean`, `std` float32
    `[3]` per axis over all of them; `sources` names the datasets, in order."""

    windows: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    sample_rate: float
    seconds: float
    sources: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.windows)

    def normalised(self) -> np.ndarray:
        return normalise(self.windows, self.mean, self.std)


def sensor_corpus(
    datasets: Sequence[IMUDataset],
    *,
    seconds: float,
    sample_rate: float = 50.0,
    overlap: float = WINDOW_OVERLAP,
) -> SensorCorpus:
    """Windows of every recording of every dataset, in dataset then recording order."""
    if not datasets:
        raise ValueError("a sensor corpus needs at least one dataset")
    parts = [
        make_windows(_all_samples_labelled(dataset), seconds=seconds, sample_rate=sample_rate,
                     overlap=overlap).samples
        for dataset in datasets
    ]
    windows = np.concatenate(parts).astype(np.float32, copy=False)
    flat = windows.reshape(-1, 3).astype(np.float64)
    mean, std = flat.mean(axis=0), flat.std(axis=0)
    constant = [axis for axis, value in zip(AXIS_NAMES, std) if not value > 0]
    names = tuple(dataset.name for dataset in datasets)
    if constant:
        raise ValueError(f"sensor corpus {', '.join(names)}: axis {', '.join(constant)} is "
                         "constant over every window, so it cannot be normalised")
    return SensorCorpus(windows, mean.astype(np.float32), std.astype(np.float32),
                        float(sample_rate), float(seconds), names)


def load_sensor_corpus(
    sources: Sequence[tuple[str, str | os.PathLike | None]],
    *,
    seconds: float,
    sample_rate: float = 50.0,
    overlap: float = WINDOW_OVERLAP,
    generic_sample_rate: float | None = None,
) -> SensorCorpus:
    """`sensor_corpus` of registry datasets given as `(name, data_dir)` pairs, e.g.
    `[("daphnet", "/data/daphnet"), ("basicmotions", None)]`."""
    datasets = [load_dataset(name, data_dir, sample_rate=generic_sample_rate)
                for name, data_dir in sources]
    return sensor_corpus(datasets, seconds=seconds, sample_rate=sample_rate, overlap=overlap)


def normalise(windows: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """`(windows - mean) / std` per axis, as float32."""
    mean, std = np.asarray(mean, np.float32), np.asarray(std, np.float32)
    if mean.shape != (3,) or std.shape != (3,):
        raise ValueError(f"mean and std must be per-axis [3]; got {mean.shape}, {std.shape}")
    return ((np.asarray(windows, np.float32) - mean) / std).astype(np.float32)


def _all_samples_labelled(dataset: IMUDataset) -> IMUDataset:
    """The dataset with one class covering every sample, so `make_windows` keeps every window."""
    recordings = tuple(dataclasses.replace(recording, labels=np.zeros_like(recording.labels))
                       for recording in dataset.recordings)
    return dataclasses.replace(dataset, classes=("any",), recordings=recordings)
