"""The one host-side check every entry point runs on user IMU data before it reaches a device.

Errors are `ValueError`s that say what is wrong and where: the file and line when the data came
from a file, otherwise the window, sample and axis.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

AXIS_NAMES = ("x", "y", "z")
MIN_SAMPLES = 2


def validate_windows(
    windows: object,
    *,
    min_samples: int = MIN_SAMPLES,
    source: str = "input",
    lines: Sequence[int] | None = None,
) -> np.ndarray:
    """Checks accelerometer windows `[..., time, 3]` and returns them as float32.

    `source` names where the data came from (a file path, say); `lines[t]` is the file line that
    holds sample `t` of a single window `[time, 3]`, so errors can point at it.
    """
    array = _as_numeric(windows, source)
    if array.ndim < 2:
        raise ValueError(
            f"{source}: expected windows shaped [..., time, 3] (x, y, z); got shape {array.shape}"
        )
    if array.shape[-1] != len(AXIS_NAMES):
        raise ValueError(
            f"{source}: expected 3 accelerometer axes (x, y, z) in the last dimension; got "
            f"{array.shape[-1]} (shape {array.shape})"
        )
    if array.shape[-2] < min_samples:
        raise ValueError(
            f"{source}: windows have {array.shape[-2]} sample(s); at least {min_samples} are needed"
        )
    bad = np.argwhere(~np.isfinite(array))
    if bad.size:
        position = tuple(int(i) for i in bad[0])
        *window, sample, axis = position
        value = array[position]
        if lines is not None and not window:
            where = f"{source} line {lines[sample]}"
        else:
            where = f"{source}: " + (f"window {tuple(window)}, " if window else "") + f"sample {sample}"
        raise ValueError(
            f"{where}: axis {AXIS_NAMES[axis]} is {value}; values must be finite "
            f"({len(bad)} non-finite value(s) in all)"
        )
    return array.astype(np.float32)


def _as_numeric(windows: object, source: str) -> np.ndarray:
    array = np.asarray(windows)
    if array.dtype.kind in "iuf":
        return array
    if array.dtype.kind == "O":
        for position, value in np.ndenumerate(array):
            if not _is_real_number(value):
                raise ValueError(f"{source}: expected numbers; found {value!r} at index {position}")
        return array.astype(np.float64)
    raise ValueError(f"{source}: expected real numbers; got an array of {array.dtype}")


def _is_real_number(value: object) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(
        value, (bool, np.bool_)
    )


def finite_number(field: str, where: str) -> float:
    """One text field of a data file as a float; a ValueError naming `where` if it is not a
    finite number."""
    try:
        value = float(field)
    except ValueError:
        raise ValueError(f"{where} is {field.strip()!r}, not a number") from None
    if not math.isfinite(value):
        raise ValueError(f"{where} is {field.strip()!r}; values must be finite")
    return value
