"""PVS, Passive Vehicular Sensors (Menegazzo & von Wangenheim 2020): road surface from car IMUs.

Sources: the dataset's project page
https://github.com/jefmenegazzo/Intelligent-Vehicle-Perception-Based-on-Inertial-Sensing-and-Artificial-Intelligence
(README: nine folders, file list, MPU-9250 at 100 Hz, acceleration in m/s^2, one-hot labels),
the authors' own preprocessing that wrote the published CSVs,
https://github.com/jefmenegazzo/MPU-9250-and-GPS-Raw-Data-Pre-Processing
(`src/1 - Raw Data Pre-Processing.ipynb`, `src/3 - Data Class Labeling.ipynb`), the Kaggle copy
https://www.kaggle.com/datasets/jefmenegazzo/pvs-passive-vehicular-sensors-datasets, and the
paper, SBESC 2020, https://doi.org/10.1109/SBESC51047.2020.9277846.

Layout:
    <data_dir>/PVS <n>/dataset_gps_mpu_left.csv, dataset_gps_mpu_right.csv, dataset_labels.csv
(n = 1..9; also dataset_gps.csv, dataset_mpu_<side>.csv, dataset_settings_<side>.csv, videos).
`dataset_gps_mpu_<side>.csv` is comma-separated with a header: `timestamp` (Unix seconds on a
0.01 s grid: the authors resample every stream to 100 Hz), then `acc_{x,y,z}_<placement>` for
placements dashboard, above_suspension, below_suspension (m/s^2, converted from g with
9.80665), gyro_*, mag_* (no below_suspension magnetometer), temp_*, and the forward-filled GPS
fix `timestamp_gps, latitude, longitude, speed`. The side is in the file name, not the column.
`dataset_labels.csv` has no time column: 14 integer 0/1 columns, one row per row of the
`dataset_gps_mpu_*` files (written from `len(data_left)`; both sides share one time grid):
paved_road, unpaved_road, dirt_road, cobblestone_road, asphalt_road, no_speed_bump,
speed_bump_asphalt, speed_bump_cobblestone, good_road_left, regular_road_left, bad_road_left,
good_road_right, regular_road_right, bad_road_right. Surface and speed-bump labels come from
hand-set sample ranges (a few boundaries overlap by one sample, so two classes can be 1); road
quality is a per-side K-means split of an IRI proxy.

Decisions:
- `task` picks the one-hot group: 'surface' (the paper's: dirt, cobblestone, asphalt, in the
  file's column order), 'paving', 'speed_bump' or 'quality' (the chosen side's columns). Class
  names are the file's column names. A row with no or several of the group's columns set is
  unlabelled.
- The paper names neither placement nor side; the defaults are the dashboard (the cabin mount,
  closest to a phone) on the left (the file the labels were generated against). Both are
  parameters.
- Subject is the trip folder ("PVS 1" ...). Trips 1-3, 4-6 and 7-9 are each one vehicle with one
  driver (Saveiro, Bravo, Palio), on scenarios 1, 2, 3; the paper splits by subject with five
  folds, which three vehicles cannot fill, so each trip is a subject.
- A recording ends at a label change, an unlabelled row, a skipped line, or a step in
  `timestamp` that is backwards or over 1.5 sample periods. Malformed lines (wrong field count;
  a non-finite time or acceleration; a task label that is not 0 or 1) are skipped, counted and
  logged with file and line; the row's partner in the other file is dropped with it. Blank lines
  are ignored. The two files must have the same number of data rows, or the load fails.
"""

from __future__ import annotations

import csv
import logging
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from img2imu_jax.imu.validation import finite_number
from img2imu_jax.imu.recordings import (UNLABELLED, IMUDataset, Recording, cut_recordings,
                                        label_changes, time_gaps)

log = logging.getLogger(__name__)

SAMPLE_RATE = 100.0
PLACEMENTS = ("dashboard", "above_suspension", "below_suspension")
SIDES = ("left", "right")
TASKS = {
    "surface": ("dirt_road", "cobblestone_road", "asphalt_road"),
    "paving": ("paved_road", "unpaved_road"),
    "speed_bump": ("no_speed_bump", "speed_bump_asphalt", "speed_bump_cobblestone"),
    "quality": ("good_road_{side}", "regular_road_{side}", "bad_road_{side}"),
}
LABEL_FILE = "dataset_labels.csv"
SENSOR_FILE = "dataset_gps_mpu_{side}.csv"
TIME_COLUMN = "timestamp"
MAX_STEP = 1.5 / SAMPLE_RATE  # seconds; the grid step is 0.01 s
LOGGED_LINES_PER_FILE = 10  # the rest of a file's malformed lines are summarised in one message

_TRIP = re.compile(r"PVS (\d+)")


def load_pvs(
    data_dir: str | os.PathLike,
    *,
    placement: str = "dashboard",
    side: str = "left",
    task: str = "surface",
) -> IMUDataset:
    """Reads every `PVS <n>` trip folder in `data_dir` (the folder the Kaggle archive unpacks)."""
    for what, value, allowed in (
        ("placement", placement, PLACEMENTS),
        ("side", side, SIDES),
        ("task", task, tuple(TASKS)),
    ):
        if value not in allowed:
            raise ValueError(f"unknown PVS {what} {value!r}; choose one of {list(allowed)}")
    classes = tuple(name.format(side=side) for name in TASKS[task])
    columns = [TIME_COLUMN, *(f"acc_{axis}_{placement}" for axis in "xyz")]
    root = Path(data_dir)
    if not root.is_dir():
        raise ValueError(f"{root}: no such folder (expected the 'PVS 1' ... 'PVS 9' folders in it)")
    trips = sorted(
        (p for p in root.iterdir() if p.is_dir() and _TRIP.fullmatch(p.name)),
        key=lambda p: int(_TRIP.fullmatch(p.name).group(1)),
    )
    if not trips:
        raise ValueError(f"{root}: no trip folders named 'PVS <n>' (e.g. 'PVS 1')")
    recordings: list[Recording] = []
    skipped = 0
    for trip in trips:
        sensor_path = trip / SENSOR_FILE.format(side=side)
        label_path = trip / LABEL_FILE
        for path in (sensor_path, label_path):
            if not path.is_file():
                raise ValueError(f"{path}: no such file in trip folder {trip.name!r}")
        sensor_rows, sensor_bad = _read(
            sensor_path, columns, lambda field, name: finite_number(field, f"column {name!r}")
        )
        label_rows, label_bad = _read(label_path, list(classes), _bit)
        if len(sensor_rows) != len(label_rows):
            raise ValueError(
                f"{sensor_path} has {len(sensor_rows)} data rows but {label_path} has "
                f"{len(label_rows)}; the labels must have one row per sensor row"
            )
        skipped += sensor_bad + label_bad
        recordings.extend(_runs(sensor_rows, label_rows, len(classes), trip.name, label_path))
    if not recordings:
        raise ValueError(f"{root}: no rows labelled with exactly one of {list(classes)}")
    return IMUDataset("pvs", classes, tuple(recordings), skipped)


def _read(
    path: Path, wanted: Sequence[str], parse: Callable[[str, str], float]
) -> tuple[list[list[float] | None], int]:
    """Per data row, the `wanted` columns parsed (None where the line is malformed); bad count."""
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        names = [name.strip() for name in next(reader, [])]
        if not names:
            raise ValueError(f"{path}: empty file; expected a header row naming the columns")
        missing = [name for name in wanted if name not in names]
        if missing:
            raise ValueError(f"{path}: no column(s) {missing} in the header; found {names}")
        at = [names.index(name) for name in wanted]
        rows: list[list[float] | None] = []
        bad = 0
        for fields in reader:
            if not any(field.strip() for field in fields):
                continue
            try:
                if len(fields) != len(names):
                    raise ValueError(f"expected {len(names)} fields, found {len(fields)}")
                rows.append([parse(fields[i], names[i]) for i in at])
            except ValueError as problem:
                rows.append(None)
                bad += 1
                if bad <= LOGGED_LINES_PER_FILE:
                    log.warning("%s line %d: skipped, %s", path, reader.line_num, problem)
    if bad > LOGGED_LINES_PER_FILE:
        log.warning("%s: %d malformed lines skipped in all", path, bad)
    return rows, bad


def _runs(
    sensor_rows: list[list[float] | None],
    label_rows: list[list[float] | None],
    width: int,
    subject: str,
    label_path: Path,
) -> list[Recording]:
    """Pairs the files row by row and cuts at bad rows, label changes and time gaps."""
    good = np.array([s is not None and b is not None for s, b in zip(sensor_rows, label_rows)],
                    dtype=bool)
    sensor = np.array([s or [np.nan] * 4 for s in sensor_rows], np.float64).reshape(-1, 4)
    onehot = np.array([b or [0.0] * width for b in label_rows], np.float64).reshape(-1, width)
    single = onehot.sum(axis=1) == 1
    if (good & ~single).any():
        log.info("%s: %d rows have no or several task classes set; they are unlabelled",
                 label_path, int((good & ~single).sum()))
    labels = np.where(good & single, onehot.argmax(axis=1), UNLABELLED)
    times, samples = sensor[:, 0], sensor[:, 1:]
    breaks = label_changes(labels) | time_gaps(times, MAX_STEP)
    return cut_recordings(samples, labels, breaks, subject=subject, sample_rate=SAMPLE_RATE)


def _bit(field: str, name: str) -> float:
    if field.strip() not in ("0", "1", "0.0", "1.0"):
        raise ValueError(f"column {name!r} is {field!r}, not a 0/1 label")
    return float(field)
