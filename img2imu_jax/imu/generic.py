"""Your own labelled accelerometer data: the one documented format, as a CSV or an NPZ file.

CSV (`.csv` or any other name that does not end in `.npz`; UTF-8, comma-separated). The first
non-blank line is a header naming the columns, in any order (case and surrounding spaces
ignored); no other column is allowed:

    subject,label,x,y,z            (required)
    timestamp                      (optional)

- `subject`, `label`: non-empty text (quote it if it holds a comma).
- `x`, `y`, `z`: one accelerometer sample per row, finite numbers in any one unit.
- `timestamp`: the sample's time in seconds, a finite number.
- Rows are in time order; blank lines are ignored. Example:

      subject,label,x,y,z,timestamp
      p01,walking,0.12,-0.98,0.05,0.00
      p01,walking,0.15,-1.02,0.04,0.02

NPZ (`.npz`, as written by `numpy.savez`; no pickled object arrays), holding exactly:

- `samples`: numbers `[N, 3]` (x, y, z), finite;
- `labels`: `[N]` strings or integers;
- `subjects`: `[N]` strings or integers;
- `timestamps` (optional): `[N]` seconds, finite.

Both become recordings the same way. `sample_rate` (Hz) is given by the caller, since the
format does not carry it. Consecutive rows of one subject form one recording; a new one starts
where the subject changes and, with timestamps, where time does not advance or steps by more
than 2.5 sample periods (two or more samples missing; the half-period margin absorbs timestamp
jitter). Labels may change within a recording — they are per sample. The classes are the sorted
unique labels (text sorts as text, NPZ integers numerically and are then named by their digits).

Every problem is a `ValueError` naming the file and the line (CSV, counted from 1) or row (NPZ,
counted from 0), and the offending value: an empty file, a missing or unknown column or array,
a wrong number of fields, an empty subject or label, a non-number or non-finite value.
"""

from __future__ import annotations

import csv
import math
import os
import zipfile
from pathlib import Path

import numpy as np

from img2imu_jax.imu.validation import finite_number
from img2imu_jax.imu.recordings import IMUDataset, cut_recordings, time_gaps

REQUIRED = ("subject", "label", "x", "y", "z")
OPTIONAL = ("timestamp",)
NPZ_REQUIRED = ("samples", "labels", "subjects")
NPZ_OPTIONAL = ("timestamps",)
MAX_STEP_PERIODS = 2.5


def load_generic(path: str | os.PathLike, *, sample_rate: float) -> IMUDataset:
    """Reads a CSV or NPZ in the format above; the dataset is named after the file."""
    path = Path(path)
    if not (math.isfinite(sample_rate) and sample_rate > 0):
        raise ValueError(f"sample_rate must be a positive number of Hz; got {sample_rate}")
    if path.stat().st_size == 0:
        raise ValueError(f"{path}: empty file")
    read = _read_npz if path.suffix.lower() == ".npz" else _read_csv
    samples, labels, subjects, timestamps = read(path)
    classes, label_index = np.unique(labels, return_inverse=True)
    subjects = subjects.astype(str)
    breaks = subjects[1:] != subjects[:-1]
    if timestamps is not None:
        breaks |= time_gaps(timestamps, MAX_STEP_PERIODS / sample_rate)
    recordings = cut_recordings(samples, label_index, breaks, subject=subjects,
                                sample_rate=sample_rate)
    return IMUDataset(path.stem, tuple(str(c) for c in classes), tuple(recordings))


def _read_csv(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    with open(path, encoding="utf-8-sig", newline="") as handle:
        reader = csv.reader(handle)
        header = next((row for row in reader if any(field.strip() for field in row)), None)
        if header is None:
            raise ValueError(f"{path}: empty file; expected a header line {','.join(REQUIRED)}")
        columns = _columns(header, path, reader.line_num)
        numeric = [name for name in ("x", "y", "z", "timestamp") if name in columns]
        text: dict[str, list[str]] = {"subject": [], "label": []}
        numbers: dict[str, list[float]] = {name: [] for name in numeric}
        for row in reader:
            if not any(field.strip() for field in row):
                continue
            where = f"{path} line {reader.line_num}"
            if len(row) != len(header):
                raise ValueError(f"{where}: {len(row)} fields; the header has {len(header)}")
            for name in text:
                value = row[columns[name]].strip()
                if not value:
                    raise ValueError(f"{where}: column {name} is empty")
                text[name].append(value)
            for name in numeric:
                numbers[name].append(finite_number(row[columns[name]], f"{where}: column {name}"))
    if not text["label"]:
        raise ValueError(f"{path}: a header but no data rows")
    samples = np.column_stack([numbers[axis] for axis in ("x", "y", "z")])
    timestamps = np.asarray(numbers["timestamp"]) if "timestamp" in numbers else None
    return samples, np.asarray(text["label"]), np.asarray(text["subject"]), timestamps


def _columns(header: list[str], path: Path, line: int) -> dict[str, int]:
    """Maps each column name to its position; any unknown, repeated or missing one is an error."""
    names = [field.strip().lower() for field in header]
    for position, name in enumerate(names):
        if name not in REQUIRED + OPTIONAL:
            raise ValueError(
                f"{path} line {line}: unknown column {header[position]!r}; allowed are "
                f"{', '.join(REQUIRED + OPTIONAL)}"
            )
        if names.index(name) != position:
            raise ValueError(f"{path} line {line}: column {name!r} appears twice")
    missing = [name for name in REQUIRED if name not in names]
    if missing:
        raise ValueError(
            f"{path} line {line}: header {','.join(header)!r} lacks column(s) {', '.join(missing)}"
        )
    return {name: position for position, name in enumerate(names)}


def _read_npz(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except (OSError, ValueError, zipfile.BadZipFile) as error:
        raise ValueError(f"{path}: not a readable .npz of plain arrays ({error})") from None
    unknown = sorted(set(arrays) - set(NPZ_REQUIRED + NPZ_OPTIONAL))
    if unknown:
        raise ValueError(
            f"{path}: unknown array(s) {', '.join(unknown)}; allowed are "
            f"{', '.join(NPZ_REQUIRED + NPZ_OPTIONAL)}"
        )
    missing = [name for name in NPZ_REQUIRED if name not in arrays]
    if missing:
        raise ValueError(f"{path}: lacks array(s) {', '.join(missing)}")
    samples = arrays["samples"]
    if samples.ndim != 2 or samples.shape[1] != 3 or samples.dtype.kind not in "iuf":
        raise ValueError(
            f"{path}: samples is {samples.dtype} {samples.shape}; expected numbers [N, 3]"
        )
    if len(samples) == 0:
        raise ValueError(f"{path}: samples has no rows")
    _check_finite(samples, path, "samples")
    for name in ("labels", "subjects"):
        values = arrays[name]
        _check_length(values, len(samples), path, name)
        if values.dtype.kind not in "Uiu":
            raise ValueError(f"{path}: {name} is {values.dtype}; expected strings or integers")
        empty = np.flatnonzero(values == "") if values.dtype.kind == "U" else []
        if len(empty):
            raise ValueError(f"{path}: {name} row {empty[0]} is empty")
    timestamps = arrays.get("timestamps")
    if timestamps is not None:
        _check_length(timestamps, len(samples), path, "timestamps")
        if timestamps.dtype.kind not in "iuf":
            raise ValueError(f"{path}: timestamps is {timestamps.dtype}; expected seconds")
        _check_finite(timestamps, path, "timestamps")
    return samples, arrays["labels"], arrays["subjects"], timestamps


def _check_length(values: np.ndarray, rows: int, path: Path, name: str) -> None:
    if values.shape != (rows,):
        raise ValueError(f"{path}: {name} has shape {values.shape}; expected [{rows}] like samples")


def _check_finite(values: np.ndarray, path: Path, name: str) -> None:
    bad = np.argwhere(~np.isfinite(values))
    if bad.size:
        row, *axis = (int(i) for i in bad[0])
        where = f"row {row}" + "".join(f" axis {'xyz'[a]}" for a in axis)
        value = values[(row, *axis)]
        raise ValueError(f"{path}: {name} {where} is {value}; values must be finite")
