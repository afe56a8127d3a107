"""Recordings → fixed-length labelled windows at one sample rate, the protocol's unit.

The paper (v2) resamples every dataset to 50 Hz and cuts 2, 5 or 10 s windows with 50 %
overlap. Each recording is resampled on the host with `scipy.signal.resample_poly` (streams
have arbitrary lengths; the jitted `spectrogram.resample` is for fixed-shape batches on a
device), and each resampled sample takes the label of the source sample at or just before its
time. A window never straddles two recordings, so never a gap in the data.

Label rules: `single` keeps only windows whose samples all share one label (the default:
no window mixes activities); `majority` labels a window by its most frequent label (ties go to
the lower class index). Either way a window touching an unlabelled sample is dropped.
"""

from __future__ import annotations

import dataclasses
from fractions import Fraction

import numpy as np
import scipy.signal

from img2imu_jax.imu.recordings import UNLABELLED, IMUDataset, Recording

LABEL_RULES = ("single", "majority")
WINDOW_OVERLAP = 0.5  # the paper's


@dataclasses.dataclass(frozen=True)
class Windows:
    """`samples` float32 `[N, time, 3]`, `labels` int64 `[N]`, `subjects` `[N]` (str)."""

    samples: np.ndarray
    labels: np.ndarray
    subjects: np.ndarray
    classes: tuple[str, ...]
    sample_rate: float

    def __len__(self) -> int:
        return len(self.labels)

    def select(self, indices: np.ndarray) -> "Windows":
        return dataclasses.replace(self, samples=self.samples[indices],
                                   labels=self.labels[indices], subjects=self.subjects[indices])


def make_windows(
    dataset: IMUDataset,
    *,
    seconds: float,
    sample_rate: float = 50.0,
    overlap: float = WINDOW_OVERLAP,
    label_rule: str = "single",
) -> Windows:
    """Cuts every recording of `dataset` into `seconds`-long windows at `sample_rate`."""
    if label_rule not in LABEL_RULES:
        raise ValueError(f"label_rule must be one of {LABEL_RULES}; got {label_rule!r}")
    length, hop = _geometry(seconds, sample_rate, overlap)
    samples, labels, subjects = [], [], []
    for recording in dataset.recordings:
        signal, per_sample = _resampled(recording, sample_rate)
        for start in range(0, len(signal) - length + 1, hop):
            label = _window_label(per_sample[start:start + length], label_rule,
                                  len(dataset.classes))
            if label is not None:
                samples.append(signal[start:start + length])
                labels.append(label)
                subjects.append(recording.subject)
    if not samples:
        raise ValueError(
            f"{dataset.name}: no {seconds} s window fits any recording at {sample_rate} Hz "
            f"with the {label_rule!r} label rule"
        )
    return Windows(np.stack(samples).astype(np.float32), np.asarray(labels, np.int64),
                   np.asarray(subjects), dataset.classes, sample_rate)


def cut_stream(
    samples: np.ndarray,
    source_rate: float,
    *,
    seconds: float,
    sample_rate: float = 50.0,
    overlap: float = WINDOW_OVERLAP,
) -> tuple[np.ndarray, np.ndarray]:
    """Unlabelled windows `[N, time, 3]` of one `[time, 3]` stream, cut as `make_windows` cuts
    a recording, and each window's start in seconds."""
    stream = Recording(samples, np.zeros(len(samples), np.int64), "input", source_rate)
    signal, _ = _resampled(stream, sample_rate)
    length, hop = _geometry(seconds, sample_rate, overlap)
    starts = np.arange(0, len(signal) - length + 1, hop)
    if not len(starts):
        raise ValueError(f"{len(samples)} samples at {source_rate} Hz "
                         f"({len(samples) / source_rate:.2f} s) are shorter than one "
                         f"{seconds} s window")
    windows = np.stack([signal[start:start + length] for start in starts]).astype(np.float32)
    return windows, starts / sample_rate


def _geometry(seconds: float, sample_rate: float, overlap: float) -> tuple[int, int]:
    """Window length and hop in samples."""
    if not 0 <= overlap < 1:
        raise ValueError(f"overlap must be in [0, 1); got {overlap}")
    length = round(seconds * sample_rate)
    if length < 2:
        raise ValueError(f"{seconds} s at {sample_rate} Hz is under 2 samples per window")
    return length, max(1, round(length * (1 - overlap)))


def _resampled(recording: Recording, sample_rate: float) -> tuple[np.ndarray, np.ndarray]:
    ratio = (Fraction(sample_rate).limit_denominator(1000)
             / Fraction(recording.sample_rate).limit_denominator(1000))
    if ratio == 1:
        return recording.samples, recording.labels
    signal = scipy.signal.resample_poly(recording.samples.astype(np.float64), ratio.numerator,
                                        ratio.denominator, axis=0)
    source = np.floor(np.arange(len(signal)) / float(ratio)).astype(np.int64)
    return signal, recording.labels[np.minimum(source, len(recording.labels) - 1)]


def _window_label(labels: np.ndarray, rule: str, n_classes: int) -> int | None:
    if (labels == UNLABELLED).any():
        return None
    if rule == "single":
        return int(labels[0]) if (labels == labels[0]).all() else None
    return int(np.bincount(labels, minlength=n_classes).argmax())
