"""`img2imu predict`: a class per window of a raw accelerometer recording, with a saved classifier.

The recording is cut exactly as the classifier's training data was (its window length,
overlap and sample rate come from the saved `classifier.json`), so a prediction sees what
training saw.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from img2imu_jax.classifier import class_probabilities, load_classifier
from img2imu_jax.imu.windows import cut_stream
from img2imu_jax.imu.xyz_csv import read_xyz_csv
from img2imu_jax.paths import user_path


@dataclasses.dataclass(frozen=True)
class Prediction:
    start: float  # seconds from the first sample
    end: float
    label: str
    probability: float


def predict_csv(checkpoint: str | os.PathLike, csv_path: str | os.PathLike, *,
                sample_rate: float | None = None,
                columns: str | None = None) -> tuple[list[Prediction], dict]:
    """Predictions for every window of `csv_path` (x, y, z columns and optionally timestamps;
    see `imu.xyz_csv`) recorded at `sample_rate` Hz (default: its timestamps' rate, else the
    rate of the dataset the classifier was trained on); also the metadata."""
    if sample_rate is not None and not sample_rate > 0:
        raise ValueError(f"sample rate must be > 0 Hz; got {sample_rate}")
    classifier, frontend, meta = load_classifier(checkpoint)
    recording = read_xyz_csv(csv_path, columns=columns, sample_rate=sample_rate, min_samples=2)
    rate = recording.sample_rate or meta["source_sample_rate"]
    windows, starts = cut_stream(recording.samples, rate, seconds=meta["seconds"],
                                 sample_rate=meta["sample_rate"], overlap=meta["overlap"])
    probabilities = class_probabilities(classifier, frontend, windows)
    chosen = probabilities.argmax(axis=-1)
    return [Prediction(float(start), float(start + meta["seconds"]), meta["classes"][c],
                       float(p[c])) for start, c, p in zip(starts, chosen, probabilities)], meta


def write_csv(predictions: list[Prediction], path: str | os.PathLike | None) -> str:
    """The predictions as CSV text (`start_s,end_s,label,probability`), also to `path` if set."""
    lines = ["start_s,end_s,label,probability"] + [
        f"{p.start:.3f},{p.end:.3f},{p.label},{p.probability:.4f}" for p in predictions]
    text = "\n".join(lines) + "\n"
    if path is not None:
        user_path(path, what="output").write_text(text)
    return text


def summary(predictions: list[Prediction]) -> str:
    """`N windows: walking 12, running 3` (most frequent first)."""
    labels, counts = np.unique([p.label for p in predictions], return_counts=True)
    order = np.argsort(-counts, kind="stable")
    return f"{len(predictions)} windows: " + ", ".join(
        f"{labels[i]} {counts[i]}" for i in order)
