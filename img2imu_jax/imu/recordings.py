"""What every IMU dataset loader returns: continuous per-subject accelerometer recordings.

Loaders keep each dataset's own sample rate and label names; windowing, resampling to a common
rate and the evaluation protocol work on this one shape, whatever the source format was.
"""

from __future__ import annotations

import dataclasses

import numpy as np

UNLABELLED = -1


@dataclasses.dataclass(frozen=True)
class Recording:
    """One uninterrupted accelerometer stream of one subject.

    `samples` is float32 `[time, 3]` (x, y, z); `labels` is int64 `[time]`, an index into the
    dataset's `classes` per sample, or `UNLABELLED` for samples that belong to no class (they
    never reach a window). A gap in time (a missing stretch of the source) starts a new
    Recording, so windows never straddle one.
    """

    samples: np.ndarray
    labels: np.ndarray
    subject: str
    sample_rate: float

    def __post_init__(self):
        if self.samples.ndim != 2 or self.samples.shape[1] != 3:
            raise ValueError(f"samples must be [time, 3]; got {self.samples.shape}")
        if self.labels.shape != self.samples.shape[:1]:
            raise ValueError(f"labels {self.labels.shape} do not match samples {self.samples.shape}")


@dataclasses.dataclass(frozen=True)
class IMUDataset:
    """A dataset as its authors publish it, read into recordings.

    `skipped` counts source lines or rows that were malformed and left out (each loader logs
    them with file and line); a loader never drops a good line.
    """

    name: str
    classes: tuple[str, ...]
    recordings: tuple[Recording, ...]
    skipped: int = 0

    @property
    def subjects(self) -> tuple[str, ...]:
        return tuple(sorted({r.subject for r in self.recordings}))


def time_gaps(times: np.ndarray, max_step: float) -> np.ndarray:
    """`[time - 1]`, True where sample t+1 does not follow sample t within `max_step` (in the
    times' unit): a missing stretch, a repeated time or a step back."""
    step = np.diff(np.asarray(times, np.float64))
    return ~(step > 0) | (step > max_step)


def label_changes(labels: np.ndarray) -> np.ndarray:
    """`[time - 1]`, True where sample t+1's label differs from sample t's."""
    return labels[1:] != labels[:-1]


def cut_recordings(samples: np.ndarray, labels: np.ndarray, breaks: np.ndarray, *,
                   subject: str | np.ndarray, sample_rate: float) -> list[Recording]:
    """One source stream cut into Recordings: a new one starts after every True of `breaks`
    (`[time - 1]`: sample t+1 does not continue sample t; each loader states its own rule).
    `subject` is one name or one per sample (a recording takes its first sample's); stretches
    with no labelled sample are left out."""
    bounds = [0, *(np.flatnonzero(breaks) + 1).tolist(), len(labels)]
    subjects = np.broadcast_to(np.asarray(subject, dtype=object), (len(labels),))
    return [
        Recording(samples=np.asarray(samples[begin:end], np.float32),
                  labels=np.asarray(labels[begin:end], np.int64), subject=str(subjects[begin]),
                  sample_rate=float(sample_rate))
        for begin, end in zip(bounds[:-1], bounds[1:])
        if end > begin and (labels[begin:end] != UNLABELLED).any()
    ]
