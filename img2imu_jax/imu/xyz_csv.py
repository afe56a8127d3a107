"""Reads an accelerometer recording from a CSV: x, y, z columns and optionally a timestamp.

Which columns: `columns` ("x,y,z" or "x,y,z,time": header names or 1-based numbers) when
given; else, from a header row, the columns named like x/y/z (`x`, `acc_x`, `accel_x (m/s^2)`,
...) and a timestamp (`time`, `timestamp_ms`, `seconds_elapsed`, ...); else a file of exactly
three columns whose header (if any) names none of these is x, y, z in that order. Only the chosen columns are parsed, so a phone logger's
text columns do no harm.

A timestamp's unit comes from its name (`_s`, `_ms`, `_us`, `_ns`, `(s)`); without one, the
unit in which the median step is between 1/5000 s and 2 s (s, then ms, us, ns). When the steps
vary by more than 1 % (or a `sample_rate` other than the timestamps' is asked for) the samples
are linearly interpolated (numpy.interp, no anti-aliasing filter) onto a regular grid, and a
log message says so.
"""

from __future__ import annotations

import csv
import dataclasses
import logging
import os
import re

import numpy as np

from img2imu_jax.imu.validation import AXIS_NAMES, MIN_SAMPLES, finite_number, validate_windows

log = logging.getLogger(__name__)

TIME_UNITS = {"s": 1.0, "sec": 1.0, "seconds": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}
_AXIS = re.compile(r"(?:acc(?:el(?:eration|erometer)?)?|a)?[\s_.-]*([xyz])"
                   r"(?:[\s_.-]*(?:axis|g|\(.*\)|\[.*\]))?")
_TIME = re.compile(r"(?:time(?:stamp)?|t|ts|seconds_elapsed|elapsed)"
                   r"(?:[\s_.-]*[(\[]?(s|sec|seconds|ms|us|ns)[)\]]?)?")
IRREGULAR = 0.01  # relative spread of timestamp steps beyond which samples are interpolated


@dataclasses.dataclass(frozen=True)
class XYZRecording:
    """`samples` float32 `[time, 3]`; `sample_rate` in Hz when timestamps (or the caller) set
    it, else None; `resampled` when the samples were interpolated onto a regular grid."""

    samples: np.ndarray
    sample_rate: float | None
    resampled: bool = False


def read_xyz_csv(
    path: str | os.PathLike,
    *,
    columns: str | None = None,
    sample_rate: float | None = None,
    min_samples: int = MIN_SAMPLES,
) -> XYZRecording:
    """Reads `path`; any bad cell is a `ValueError` naming the file and line.

    `sample_rate`: the rate wanted; with a timestamp column the samples are interpolated onto
    it, without one it is simply the rate reported back.
    """
    path = os.fspath(path)
    with open(path, encoding="utf-8-sig", newline="") as handle:
        rows = [(number, [field.strip() for field in fields])
                for number, fields in enumerate(csv.reader(handle), start=1)
                if [field.strip() for field in fields] not in ([], [""])]
    header = None
    if rows and not all(_is_number(field) for field in rows[0][1]):
        header = rows.pop(0)[1]
    width = len(header) if header else (len(rows[0][1]) if rows else len(AXIS_NAMES))
    chosen = _choose_columns(path, header, width, columns)
    names = header or (list(AXIS_NAMES) if width == len(AXIS_NAMES) else None)
    values, lines = [], []
    for number, fields in rows:
        if len(fields) != width:
            shown = f" ({', '.join(names)})" if names else ""
            raise ValueError(f"{path} line {number}: expected {width} columns{shown}; "
                             f"found {len(fields)}")
        values.append([_cell(path, number, fields, column, role)
                       for column, role in zip(chosen, (*AXIS_NAMES, "time"))])
        lines.append(number)
    if not values:
        raise ValueError(f"{path}: no data rows (expected lines of x, y, z numbers)")
    table = np.asarray(values, np.float64)
    samples = validate_windows(table[:, :3], min_samples=min_samples, source=path, lines=lines)
    if len(chosen) == 3:
        return XYZRecording(samples, sample_rate)
    named = _TIME.fullmatch(header[chosen[3]].lower()) if header else None
    unit = named.group(1) if named else None
    return _regular(path, samples, table[:, 3], lines, unit, sample_rate)


def _choose_columns(path: str, header: list[str] | None, width: int,
                    columns: str | None) -> list[int]:
    """0-based indices of x, y, z and, when there is one, the timestamp."""
    if columns:
        wanted = [part.strip() for part in columns.split(",")]
        if len(wanted) not in (3, 4):
            raise ValueError(f"--columns wants x,y,z or x,y,z,time (names or 1-based numbers); "
                             f"got {columns!r}")
        return [_column_index(path, header, width, name) for name in wanted]
    found = {}
    if header:
        for index, name in enumerate(header):
            axis = _AXIS.fullmatch(name.lower())
            if axis and axis.group(1) not in found:
                found[axis.group(1)] = index
            elif _TIME.fullmatch(name.lower()) and "time" not in found:
                found["time"] = index
        if all(axis in found for axis in AXIS_NAMES):
            return [found[axis] for axis in (*AXIS_NAMES, "time") if axis in found]
    if width == len(AXIS_NAMES) and not found:  # a header that names nothing we know
        return [0, 1, 2]
    shown = f"header {', '.join(header)}" if header else f"{width} unnamed columns"
    raise ValueError(f"{path}: cannot tell which columns are x, y, z ({shown}); pass --columns "
                     "x,y,z[,time] with names or 1-based numbers")


def _column_index(path: str, header: list[str] | None, width: int, name: str) -> int:
    if name.isdigit() and 1 <= int(name) <= width:
        return int(name) - 1
    if header and name in header:
        return header.index(name)
    known = f"columns: {', '.join(header)}" if header else f"{width} columns, no header"
    raise ValueError(f"{path}: no column {name!r} ({known})")


def _cell(path: str, number: int, fields: list[str], column: int, role: str) -> float:
    try:
        return float(fields[column])
    except ValueError:
        raise ValueError(f"{path} line {number}: column {column + 1} ({role}) is "
                         f"{fields[column]!r}, not a number") from None


def _regular(path: str, samples: np.ndarray, times: np.ndarray, lines: list[int],
             unit: str | None, sample_rate: float | None) -> XYZRecording:
    """Samples on a regular grid of the timestamps' median step (or of `sample_rate`)."""
    for value, line in zip(times, lines):
        finite_number(repr(float(value)), f"{path} line {line}: the timestamp")
    steps = np.diff(times)
    if len(steps) == 0 or steps.min() <= 0:
        at = int(np.argmax(steps <= 0)) + 1 if len(steps) else 0
        raise ValueError(f"{path} line {lines[at]}: timestamps must increase")
    median = float(np.median(steps))
    scale = TIME_UNITS[unit] if unit else next(
        (s for s in (1.0, 1e-3, 1e-6, 1e-9) if 1 / 5000 <= median * s <= 2.0), 1.0)
    seconds, step = (times - times[0]) * scale, median * scale
    rate = sample_rate or 1.0 / step
    spread = float(np.abs(steps - median).max() / median)
    if spread <= IRREGULAR and abs(rate * step - 1) <= 1e-6:
        return XYZRecording(samples, rate)
    grid = np.arange(int(np.floor(seconds[-1] * rate + 1e-9)) + 1) / rate
    regular = np.stack([np.interp(grid, seconds, samples[:, a]) for a in range(3)], axis=1)
    log.info("%s: timestamp steps %.4g-%.4g ms (%s); linearly interpolated %d samples onto a "
             "regular %.4g Hz grid (%d samples)", path, steps.min() * scale * 1e3,
             steps.max() * scale * 1e3, f"unit {unit}" if unit else "unit inferred",
             len(samples), rate, len(grid))
    return XYZRecording(regular.astype(np.float32), rate, resampled=True)


def _is_number(field: str) -> bool:
    try:
        float(field)
    except ValueError:
        return False
    return True
