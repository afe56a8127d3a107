"""Goat Movement (Kamminga et al. 2018): five goats, six ProMove-mini sensors on a collar, 100 Hz.

Which dataset: the paper's goats are those of Kamminga, Le, Meijers, Bisby, Meratnia and Havinga,
"Robust Sensor-Orientation-Independent Feature Selection for Animal Activity Recognition on
Collar Tags", Proc. ACM IMWUT 2(1):15, 2018 (https://doi.org/10.1145/3191747; abstract at
https://research.utwente.nl/en/publications/robust-sensor-orientation-independent-feature-selection-for-anima):
"multiple sensors around the neck of five goats", published on 4TU.ResearchData. IMG2IMU v1
(Table 2) gives ProMove-mini, 100 Hz, 5 goats, classes stationary / walking / eating / running /
trotting; v2 drops eating. Not to be confused with the 2017 "Generic online animal activity
recognition on collar tags" set (https://doi.org/10.1145/3123024.3124407; 4 goats and 2 sheep,
9 activities, 200 Hz, https://b2find.dkrz.de/dataset/542f06ce-46cd-582e-9561-da151e38e68b).

Layout, as read by the only public reader of these files found (an IDLab, Ghent University
preprocessing script for animal-activity foundation models, found through GitHub code search;
the index did not name its repository; it reads `/data/IDLab/goats_kamminga`):
    <data_dir>/<goat>/pos_<P>.csv
one folder per goat (names matching `[A-Z][0-9]`), one comma-separated file per collar position
`P` (`pos_[A-Z].csv`, six positions, A-F), with a header row naming at least `ax, ay, az`
(accelerometer), `axhg, ayhg, azhg` (high-g accelerometer), `gx, gy, gz` (gyroscope) and `label`
(the activity as text; the reader fills empty cells, which are taken here as unlabelled), at
100 Hz. The reader also fills empty sensor cells with 0; here such a line is malformed instead.

Not confirmed from the files themselves (4TU pages were not readable here), so handled loosely:
- Which position the paper used is not stated: `position` defaults to "A".
- Label spellings and case: matched case-insensitively against `classes`; labels outside
  `classes` (eating, or anything else) make the sample unlabelled, and are reported in the log.
- A time column: if the header has one of `TIME_COLUMNS` (seconds/ms as numbers, or ISO date
  times), a step back in time or above `MAX_STEP_FACTOR` x the file's median step starts a new
  recording (relative to the median because the unit is unknown). Without one, rows are taken
  as an unbroken 100 Hz stream.
- Units: whatever the files hold (ProMove-mini, most likely g); the spectrogram scales per axis.

Each recording is one uninterrupted run of one class: it ends at a label change, a time gap,
an unlabelled sample or a skipped (malformed) line. Malformed lines — wrong field count, or an
accelerometer (or time) field that is not a finite number — are skipped, counted and logged with
file and line; blank lines are ignored. The subject is the goat's folder name.
"""

from __future__ import annotations

import csv
import logging
import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from img2imu_jax.imu.validation import finite_number
from img2imu_jax.imu.recordings import (UNLABELLED, IMUDataset, Recording, cut_recordings,
                                        label_changes)

log = logging.getLogger(__name__)

SAMPLE_RATE = 100.0
CLASSES = ("stationary", "walking", "running", "trotting")  # the paper's (v2) four, its order
ACCELEROMETERS = {"low_g": ("ax", "ay", "az"), "high_g": ("axhg", "ayhg", "azhg")}
LABEL_COLUMN = "label"
TIME_COLUMNS = ("timestamp", "datetime", "time")
MAX_STEP_FACTOR = 1.5
LOGGED_LINES_PER_FILE = 10  # the rest of a file's malformed lines are summarised in one message


def load_goat(
    data_dir: str | os.PathLike,
    *,
    position: str = "A",
    accelerometer: str = "low_g",
    classes: Sequence[str] = CLASSES,
) -> IMUDataset:
    """Reads `pos_<position>.csv` of every goat folder under `data_dir`.

    `accelerometer` is 'low_g' (ax, ay, az; the default) or 'high_g' (axhg, ayhg, azhg);
    `classes` fixes which labels are kept and their order (add 'eating' for v1's five).
    """
    if accelerometer not in ACCELEROMETERS:
        raise ValueError(
            f"unknown goat accelerometer {accelerometer!r}; choose one of {sorted(ACCELEROMETERS)}"
        )
    classes = tuple(classes)
    keys = [name.strip().lower() for name in classes]
    if not classes or len(set(keys)) != len(keys) or "" in keys:
        raise ValueError(f"classes must be distinct, non-empty names; got {classes}")
    root = Path(data_dir)
    if not root.is_dir():
        raise ValueError(f"{root}: no such folder (expected a folder per goat with pos_<A-F>.csv)")
    goats = sorted(p for p in root.iterdir() if p.is_dir() and any(p.glob("pos_*.csv")))
    if not goats:
        raise ValueError(f"{root}: no goat folders (sub-folders holding pos_<A-F>.csv files)")
    recordings: list[Recording] = []
    skipped = 0
    for goat in goats:
        path = goat / f"pos_{position}.csv"
        if not path.is_file():
            have = sorted(p.stem.removeprefix("pos_") for p in goat.glob("pos_*.csv"))
            raise ValueError(f"{path}: no such file; goat {goat.name} has positions {have}")
        ordinals, times, samples, labels, bad = _read(path, ACCELEROMETERS[accelerometer], keys)
        skipped += bad
        recordings.extend(_runs(ordinals, times, samples, labels, goat.name))
    if not recordings:
        raise ValueError(f"{root}: no samples labelled {list(classes)} in any pos_{position}.csv")
    return IMUDataset("goat", classes, tuple(recordings), skipped)


def _read(
    path: Path, axes: Sequence[str], keys: Sequence[str]
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray, np.ndarray, int]:
    """Well-formed rows as (row ordinal, time, xyz, label index) arrays, and the malformed count."""
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        names = [name.strip().lower() for name in next(reader, [])]
        if not names:
            raise ValueError(f"{path}: empty file; expected a header row naming the columns")
        axis_at = [_column(names, axis, path) for axis in axes]
        label_at = _column(names, LABEL_COLUMN, path)
        time_at = next((names.index(n) for n in TIME_COLUMNS if n in names), None)
        ordinals: list[int] = []
        times: list[float] = []
        samples: list[list[float]] = []
        labels: list[int] = []
        ignored: Counter[str] = Counter()
        bad = 0
        ordinal = -1
        for fields in reader:
            if not any(field.strip() for field in fields):
                continue
            ordinal += 1
            try:
                if len(fields) != len(names):
                    raise ValueError(f"expected {len(names)} fields, found {len(fields)}")
                xyz = [finite_number(fields[i], f"column {names[i]!r}") for i in axis_at]
                time = _time(fields[time_at], names[time_at]) if time_at is not None else 0.0
            except ValueError as problem:
                bad += 1
                if bad <= LOGGED_LINES_PER_FILE:
                    log.warning("%s line %d: skipped, %s", path, reader.line_num, problem)
                continue
            label = fields[label_at].strip()
            index = keys.index(label.lower()) if label.lower() in keys else UNLABELLED
            if label and index == UNLABELLED:
                ignored[label] += 1
            ordinals.append(ordinal)
            times.append(time)
            samples.append(xyz)
            labels.append(index)
    if bad > LOGGED_LINES_PER_FILE:
        log.warning("%s: %d malformed lines skipped in all", path, bad)
    if ignored:
        log.info("%s: samples labelled %s are outside the classes and dropped", path, dict(ignored))
    return (
        np.asarray(ordinals, np.int64),
        np.asarray(times, np.float64) if time_at is not None else None,
        np.asarray(samples, np.float64).reshape(-1, 3),
        np.asarray(labels, np.int64),
        bad,
    )


def _runs(
    ordinals: np.ndarray,
    times: np.ndarray | None,
    samples: np.ndarray,
    labels: np.ndarray,
    subject: str,
) -> list[Recording]:
    """Cuts at skipped lines, time gaps and label changes; keeps the labelled runs."""
    consecutive = np.diff(ordinals) == 1
    breaks = ~consecutive | label_changes(labels)
    if times is not None and consecutive.any():
        step = np.diff(times)
        breaks |= step < 0
        typical = np.median(step[consecutive])
        if typical > 0:  # this format's gap rule: relative to the file's own median step
            breaks |= step > MAX_STEP_FACTOR * typical
    return cut_recordings(samples, labels, breaks, subject=subject, sample_rate=SAMPLE_RATE)


def _column(names: list[str], name: str, path: Path) -> int:
    if name not in names:
        raise ValueError(f"{path}: no column {name!r} in the header; found {names}")
    return names.index(name)


def _time(field: str, name: str) -> float:
    """A time as a number, in the file's own unit (numbers) or in seconds (ISO date times)."""
    try:
        return finite_number(field, f"column {name!r}")
    except ValueError:
        try:
            moment = np.datetime64(field.strip(), "us")
        except ValueError:
            moment = np.datetime64("NaT")
        if np.isnat(moment):
            raise ValueError(f"column {name!r} is {field!r}, not a number or a date time") from None
        return float(moment.astype(np.int64)) / 1e6
