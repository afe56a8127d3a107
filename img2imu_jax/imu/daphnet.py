"""Daphnet Freezing of Gait (Bächlin et al. 2010): 64 Hz worn accelerometers, freeze vs no freeze.

Layout of the release (`dataset_fog_release/dataset/S<ss>R<rr>.txt`, checked against its
`documentation.html`): one line per sample, 11 space-separated integers — time in ms, then
ankle (shank), upper leg (thigh) and trunk acceleration, each horizontal forward, vertical,
horizontal lateral, in milli-g — then the annotation: 0 not part of the experiment, 1 experiment
without freeze, 2 freeze.

Decisions:
- Samples are converted from mg to g (÷1000), so a sensor at rest reads about 1 on its vertical
  axis. The spectrogram's per-axis min–max scaling makes the unit irrelevant to the images; g
  just keeps the numbers physical. Axes stay in the published order (x forward, y vertical,
  z lateral).
- Annotation 0 is dropped and splits the recording there, as does a step in the time column of
  more than 2.5 sample periods (39 ms; the release steps by 15 or 16 ms) or one that does not
  advance: one missing line (a 31–32 ms step) is bridged, two or more split. The same rule as
  `imu.generic`; the half-period margin absorbs the whole-ms rounding of the time column.
- Each run is its own recording(s), with subject `S<ss>`; the documentation asks that all runs
  of a subject be evaluated together, which subject-wise folds do.
- A sensor reading exactly (0, 0, 0) mg is no reading: under gravity a worn sensor never does
  (the release has stretches like this where a sensor was not recording, e.g. the thigh through
  all of S03R03's annotated part). Such samples are kept but `UNLABELLED`, so they never reach
  a window.
- Malformed lines (not 11 numbers ending in 0/1/2) are skipped, counted in `skipped` and logged
  with file and line; blank lines are ignored.
"""

from __future__ import annotations

import gzip
import logging
import os
import re
from pathlib import Path

import numpy as np

from img2imu_jax.imu.recordings import UNLABELLED, IMUDataset, Recording, cut_recordings, time_gaps

log = logging.getLogger(__name__)

SAMPLE_RATE = 64.0
CLASSES = ("no_freeze", "freeze")
SENSOR_COLUMNS = {"ankle": 1, "shank": 1, "thigh": 4, "upper_leg": 4, "trunk": 7, "hip": 7}
MAX_STEP_MS = 2.5 * 1000 / SAMPLE_RATE
MG_PER_G = 1000.0
LOGGED_LINES_PER_FILE = 10  # the rest of a file's malformed lines are summarised in one message

_NUMBER = r"[-+]?\d+(?:\.\d+)?"
_LINE = re.compile(rf"\s*(?:{_NUMBER}\s+){{10}}[012]\s*")
_RUN_FILE = re.compile(r"(S\d+)R\d+\.txt(?:\.gz)?")
_SEARCHED = (Path("dataset_fog_release", "dataset"), Path("dataset"), Path("."))


def load_daphnet(data_dir: str | os.PathLike, *, sensor: str = "ankle") -> IMUDataset:
    """Reads every run under `data_dir` (the release folder, its `dataset/`, or the run files).

    `sensor` picks the accelerometer: 'ankle' (the paper's; also 'shank'), 'thigh' (or
    'upper_leg') or 'trunk' (or 'hip').
    """
    if sensor not in SENSOR_COLUMNS:
        raise ValueError(
            f"unknown Daphnet sensor {sensor!r}; choose one of {sorted(SENSOR_COLUMNS)}"
        )
    recordings: list[Recording] = []
    skipped = 0
    for path in _run_files(Path(data_dir)):
        rows, bad_lines = _read_run(path)
        skipped += bad_lines
        subject = _RUN_FILE.fullmatch(path.name).group(1)
        recordings.extend(_split_run(rows, sensor, subject, path))
    if not recordings:
        raise ValueError(f"{data_dir}: no annotated (label 1 or 2) samples in any Daphnet run")
    return IMUDataset("daphnet", CLASSES, tuple(recordings), skipped)


def _run_files(data_dir: Path) -> list[Path]:
    for folder in (data_dir / sub for sub in _SEARCHED):
        if not folder.is_dir():
            continue
        files = sorted(p for p in folder.iterdir() if _RUN_FILE.fullmatch(p.name))
        if not files:
            continue
        runs = [p.name.removesuffix(".gz") for p in files]
        duplicates = sorted({run for run in runs if runs.count(run) > 1})
        if duplicates:
            raise ValueError(
                f"{folder}: runs {duplicates} are there both plain and gzip'd; keep one of each"
            )
        return files
    raise FileNotFoundError(
        f"no Daphnet run files (S<ss>R<rr>.txt or .txt.gz) in {data_dir} or its "
        f"{' or '.join(str(s) for s in _SEARCHED[:-1])}"
    )


def _read_run(path: Path) -> tuple[np.ndarray, int]:
    """Returns the well-formed lines as float64 `[lines, 11]` and how many lines were malformed."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="ascii", errors="replace") as handle:
        lines = handle.read().split("\n")
    good: list[str] = []
    bad = 0
    for number, line in enumerate(lines, start=1):
        if _LINE.fullmatch(line):
            good.append(line)
        elif line.strip():
            bad += 1
            if bad <= LOGGED_LINES_PER_FILE:
                log.warning(
                    "%s line %d: skipped, expected 11 numbers ending in annotation 0/1/2; got %r",
                    path, number, line[:120],
                )
    if bad > LOGGED_LINES_PER_FILE:
        log.warning("%s: %d malformed lines skipped in all", path, bad)
    rows = np.loadtxt(good, dtype=np.float64, ndmin=2) if good else np.empty((0, 11))
    return rows, bad


def _split_run(rows: np.ndarray, sensor: str, subject: str, path: Path) -> list[Recording]:
    """Cuts a run where annotation 0 starts or ends and at time gaps; returns its annotated
    stretches."""
    time, annotation = rows[:, 0], rows[:, 10].astype(np.int64)
    outside = annotation == 0
    breaks = time_gaps(time, MAX_STEP_MS) | (outside[1:] != outside[:-1])
    column = SENSOR_COLUMNS[sensor]
    samples = rows[:, column : column + 3] / MG_PER_G
    labels = annotation - 1  # 1 -> no_freeze (0), 2 -> freeze (1), 0 -> UNLABELLED (dropped)
    silent = (samples == 0).all(axis=1) & (annotation != 0)
    if silent.any():
        log.warning(
            "%s: %d annotated samples where the %s sensor reads (0, 0, 0) mg are unlabelled",
            path, int(silent.sum()), sensor,
        )
        labels = np.where(silent, UNLABELLED, labels)
    return cut_recordings(samples, labels, breaks, subject=subject, sample_rate=SAMPLE_RATE)
