"""BasicMotions: smartwatch accelerometer, 10 Hz, 4 activities — real data on every install.

The UEA/UCR archive's BasicMotions ships inside the sktime (or aeon) wheel as two `.ts` files,
read here directly: importing sktime takes seconds and pulls in a large stack for nothing.
80 cases (40 TRAIN + 40 TEST, both kept) of 10 s at 10 Hz, 6 dimensions: accelerometer x, y, z
then gyroscope x, y, z; only the accelerometer is used, in the units as published (the files do
not state them; the signal is gravity-free, near 0 when standing). Classes keep the header's
order: Standing, Running, Walking, Badminton. Each case is one Recording with one label.

Subjects: the description says 4 students × 4 activities × 5 repetitions, but the files carry
no subject ids and the case order does not recover them — each file holds 10 cases per class in
class blocks, not runs of 5 per student, and with gravity removed there is no watch orientation
to group cases by. So every case is its own subject (`case01` … `case80`, TRAIN then TEST), and
subject-wise folds reduce to case-wise folds (cases of one student may land on both sides).
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np

from img2imu_jax.imu.validation import finite_number
from img2imu_jax.imu.recordings import IMUDataset, Recording

SAMPLE_RATE = 10.0
FILES = ("BasicMotions_TRAIN.ts", "BasicMotions_TEST.ts")
ACCELEROMETER = slice(0, 3)
# sktime keeps it under <package>/datasets/data/BasicMotions; aeon, its fork, is looked for at the
# same place (not checked against an installed aeon).
_PACKAGES = ("sktime", "aeon")


def load_basicmotions(path: str | os.PathLike | None = None) -> IMUDataset:
    """Reads both files from the installed sktime/aeon, from a folder holding them, or one `.ts`."""
    path = Path(path) if path is not None else _installed_folder()
    files = [path] if path.is_file() else [path / name for name in FILES]
    classes: tuple[str, ...] | None = None
    recordings: list[Recording] = []
    for file in files:
        file_classes, cases = read_ts(file)
        if classes is not None and file_classes != classes:
            raise ValueError(
                f"{file}: @classLabel {file_classes} differs from {classes} in {files[0]}"
            )
        classes = file_classes
        if cases[0][0].shape[0] < 3:
            raise ValueError(
                f"{file}: cases have {cases[0][0].shape[0]} dimension(s); the first 3 must be "
                "accelerometer x, y, z"
            )
        for series, label in cases:
            recordings.append(
                Recording(
                    samples=np.ascontiguousarray(series[ACCELEROMETER].T, dtype=np.float32),
                    labels=np.full(series.shape[1], classes.index(label), np.int64),
                    subject=f"case{len(recordings) + 1:02d}",
                    sample_rate=SAMPLE_RATE,
                )
            )
    return IMUDataset("basicmotions", classes, tuple(recordings))


def _installed_folder() -> Path:
    for package in _PACKAGES:
        spec = importlib.util.find_spec(package)  # locates the package without importing it
        for location in (spec.submodule_search_locations or []) if spec else []:
            folder = Path(location, "datasets", "data", "BasicMotions")
            if all((folder / name).is_file() for name in FILES):
                return folder
    raise FileNotFoundError(
        f"BasicMotions ({' and '.join(FILES)}) not found in an installed "
        f"{' or '.join(_PACKAGES)}; install sktime or pass the folder holding the files"
    )


def read_ts(path: str | os.PathLike) -> tuple[tuple[str, ...], list[tuple[np.ndarray, str]]]:
    """Parses an sktime `.ts` file of classified cases without timestamps.

    Returns the `@classLabel` names and, per case, float64 `[dimensions, length]` and its label.
    `#` lines are comments and `@` lines the header up to `@data`; then one case per line,
    dimensions separated by ':', values by ',', the class label last. Every case must have the
    header's `@dimensions` (or the first case's) and equal-length dimensions.
    """
    header: dict[str, str] = {}
    classes: tuple[str, ...] = ()
    dimensions: int | None = None
    cases: list[tuple[np.ndarray, str]] = []
    with open(path, encoding="utf-8") as handle:
        for number, text in enumerate(handle, start=1):
            line = text.strip()
            if not line or line.startswith("#"):
                continue
            if not classes:
                if not line.startswith("@"):
                    raise ValueError(
                        f"{path} line {number}: expected an @ header line before @data; "
                        f"got {line[:60]!r}"
                    )
                tag, _, value = line[1:].partition(" ")
                header[tag.lower()] = value.strip()
                if tag.lower() == "data":
                    classes, dimensions = _checked_header(header, path)
                continue
            cases.append(_parse_case(line, classes, dimensions, f"{path} line {number}"))
            dimensions = cases[0][0].shape[0]
    if not classes:
        raise ValueError(f"{path}: no @data line")
    if not cases:
        raise ValueError(f"{path}: no cases after @data")
    return classes, cases


def _checked_header(
    header: dict[str, str], path: str | os.PathLike
) -> tuple[tuple[str, ...], int | None]:
    """The class names and `@dimensions` (if given), once the header says the cases are
    classified and untimed."""
    if header.get("timestamps", "false").lower() != "false":
        raise ValueError(f"{path}: '@timeStamps {header['timestamps']}' is not supported")
    flag, *names = header.get("classlabel", "false").split()
    if flag.lower() != "true" or not names:
        raise ValueError(
            f"{path}: header '@classLabel {header.get('classlabel', '')}' lists no classes"
        )
    dimensions = header.get("dimensions")
    if dimensions is not None and not (dimensions.isdigit() and int(dimensions) > 0):
        raise ValueError(f"{path}: header '@dimensions {dimensions}' is not a positive integer")
    return tuple(names), int(dimensions) if dimensions is not None else None


def _parse_case(
    line: str, classes: tuple[str, ...], dimensions: int | None, where: str
) -> tuple[np.ndarray, str]:
    *series, label = line.split(":")
    if dimensions is not None and len(series) != dimensions:
        raise ValueError(
            f"{where}: {len(series)} dimension(s) before the label; expected {dimensions}"
        )
    if label not in classes:
        raise ValueError(f"{where}: class label {label!r} is not in @classLabel {classes}")
    rows: list[list[float]] = []
    for dimension, text in enumerate(series, start=1):
        row = [finite_number(value, f"{where}: dimension {dimension}") for value in text.split(",")]
        if rows and len(row) != len(rows[0]):
            raise ValueError(
                f"{where}: dimension {dimension} has {len(row)} values, dimension 1 has "
                f"{len(rows[0])}; unequal lengths are not supported"
            )
        rows.append(row)
    return np.asarray(rows, np.float64), label
