"""Reads one accelerometer window from a CSV of x, y, z columns (optionally with a header row)."""

from __future__ import annotations

import os

import numpy as np

from img2imu_jax.imu.validation import AXIS_NAMES, MIN_SAMPLES, validate_windows


def read_xyz_csv(path: str | os.PathLike, *, min_samples: int = MIN_SAMPLES) -> np.ndarray:
    """Returns float32 `[time, 3]`; any bad cell is a `ValueError` naming the file and line."""
    path = os.fspath(path)
    rows: list[list[float]] = []
    lines: list[int] = []
    header_seen = False
    with open(path, encoding="utf-8-sig") as handle:
        for number, text in enumerate(handle, start=1):
            fields = [field.strip() for field in text.strip().split(",")]
            if fields == [""]:
                continue
            if len(fields) != len(AXIS_NAMES):
                raise ValueError(
                    f"{path} line {number}: expected 3 columns (x, y, z); found {len(fields)}"
                )
            bad = [column for column, field in enumerate(fields) if not _parses(field)]
            if bad and not rows and not header_seen:
                header_seen = True  # only the first non-empty line may be a header
                continue
            if bad:
                raise ValueError(
                    f"{path} line {number}: column {bad[0] + 1} ({AXIS_NAMES[bad[0]]}) is "
                    f"{fields[bad[0]]!r}, not a number"
                )
            rows.append([float(field) for field in fields])
            lines.append(number)
    if not rows:
        raise ValueError(f"{path}: no data rows (expected lines of x, y, z numbers)")
    return validate_windows(
        np.asarray(rows, np.float64), min_samples=min_samples, source=path, lines=lines
    )


def _parses(field: str) -> bool:
    try:
        float(field)
    except ValueError:
        return False
    return True
