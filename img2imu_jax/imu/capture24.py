"""Capture-24 (Chan et al. 2024): 151 participants, a wrist-worn Axivity AX3 at 100 Hz, ~24 h each.

Layout of the release (checked against the OxWearables/capture24 repository's loading code and
published samples of the files): one gzip'd CSV per participant, `P<NNN>.csv.gz`, with the
header `time,x,y,z,annotation` and one line per sample, e.g.

    2016-10-17 03:53:00.010000,-0.38611975,0.48305458,-0.79465705,7030 sleeping;MET 0.95

`time` is a local date-time with microseconds, x/y/z are in g, `annotation` is a free-text
Compendium of Physical Activities description (it may hold `;`, and is CSV-quoted if it holds a
comma), empty where the wearable camera gave no annotation. `annotation-label-dictionary.csv`
beside the files maps each annotation to coarser labels, one column `label:<scheme>` per scheme
(Walmsley2020, Willetts2018, WillettsSpecific2018, Doherty2018, ...).

Decisions:
- Labels: `label_scheme` names a dictionary column (default Walmsley2020: sleep, sedentary,
  light, moderate-vigorous; the classes are that column's values, sorted); `None` keeps the raw
  annotations as classes (sorted). An empty annotation makes the sample `UNLABELLED`: it never
  reaches a labelled window, but a sensor pre-training corpus still uses it.
- An empty or NaN x, y or z marks a missing sample (empty is how pandas writes NaN; the
  authors' own loader drops windows holding NaN): the row is dropped. Then, as in `imu.generic`
  and `imu.daphnet`, a new recording starts where time does not advance or steps by more
  than 2.5 sample periods (25 ms): one missing row is bridged, two or more split. A stretch
  with no annotated sample is left out, as every loader leaves out unlabelled stretches.
- Anything else malformed (wrong header, wrong number of fields, a time that is no date-time,
  a non-number or infinite axis, an annotation missing from the dictionary, a corrupt gzip) is a
  `ValueError` naming the file, the line and the value: the release is machine-written, so such
  a line means a damaged file, not something to skip.
- Everything is read into memory: about 20 bytes per kept sample (some 170 MB per participant
  day), so the whole release does not fit a usual machine; `participants` picks a subset.
  Parsing uses the standard csv module (pandas is no declared dependency) and numpy's vectorised
  conversions: 8 s per million rows measured on a busy 2-core machine, about a minute per
  participant.
"""

from __future__ import annotations

import csv
import gzip
import itertools
import logging
import os
import re
from collections.abc import Collection
from pathlib import Path

import numpy as np

from img2imu_jax.imu.recordings import UNLABELLED, IMUDataset, cut_recordings, time_gaps
from img2imu_jax.imu.validation import AXIS_NAMES

log = logging.getLogger(__name__)

SAMPLE_RATE = 100.0
HEADER = ("time", "x", "y", "z", "annotation")
LABEL_DICTIONARY = "annotation-label-dictionary.csv"
DEFAULT_SCHEME = "Walmsley2020"
MAX_STEP_PERIODS = 2.5
_MAX_STEP_US = MAX_STEP_PERIODS * 1e6 / SAMPLE_RATE
CHUNK_ROWS = 500_000
_PARTICIPANT_FILE = re.compile(r"(P\d{3})\.csv\.gz")
_SEARCHED = (Path("."), Path("capture24"))


def load_capture24(
    data_dir: str | os.PathLike,
    *,
    label_scheme: str | None = DEFAULT_SCHEME,
    participants: Collection[str] | None = None,
) -> IMUDataset:
    """Reads every `P<NNN>.csv.gz` in `data_dir` (or its `capture24/`), or only `participants`
    (e.g. {"P001", "P002"}); each participant is one subject."""
    folder, files = _participant_files(Path(data_dir))
    if participants is not None:
        missing = sorted(set(participants) - set(files))
        if missing:
            raise ValueError(f"{folder}: no file for participant(s) {', '.join(missing)}")
        files = {pid: path for pid, path in files.items() if pid in participants}
    mapping, classes = _label_mapping(folder, label_scheme)
    read = []
    for number, (pid, path) in enumerate(sorted(files.items()), start=1):
        read.append((pid, path, *_read_participant(path)))
        log.info("Capture-24 %d/%d: %s, %d samples", number, len(files), path.name,
                 len(read[-1][2]))
    if mapping is None:
        classes = tuple(sorted({vocabulary[code] for *_, codes, _, vocabulary in read
                                for code in np.unique(codes)} - {""}))
        mapping = {annotation: annotation for annotation in classes}
    index = {name: i for i, name in enumerate(classes)}
    recordings = []
    for pid, path, times, samples, codes, row_numbers, vocabulary in read:
        label_of_code = np.full(len(vocabulary), UNLABELLED, np.int64)
        for code in np.unique(codes):
            annotation = vocabulary[code]
            if annotation and annotation not in mapping:
                line = _line_of(path, row_numbers[np.argmax(codes == code)])
                raise ValueError(f"{path} line {line}: annotation {annotation!r} is not in "
                                 f"{folder / LABEL_DICTIONARY}")
            if annotation:
                label_of_code[code] = index[mapping[annotation]]
        recordings += cut_recordings(samples, label_of_code[codes],
                                     time_gaps(times, _MAX_STEP_US), subject=pid,
                                     sample_rate=SAMPLE_RATE)
    if not recordings:
        raise ValueError(f"{folder}: no annotated samples with x, y and z in any participant "
                         "file")
    return IMUDataset("capture24", classes, tuple(recordings))


def _participant_files(data_dir: Path) -> tuple[Path, dict[str, Path]]:
    for folder in (data_dir / sub for sub in _SEARCHED):
        if folder.is_dir():
            files = {match.group(1): path for path in folder.iterdir()
                     if (match := _PARTICIPANT_FILE.fullmatch(path.name))}
            if files:
                return folder, files
    raise FileNotFoundError(f"no Capture-24 participant files (P<NNN>.csv.gz) in {data_dir} or "
                            f"{data_dir / _SEARCHED[1]}")


def _label_mapping(folder: Path, scheme: str | None
                   ) -> tuple[dict[str, str] | None, tuple[str, ...]]:
    """{annotation: label} and the sorted labels of `scheme`, from the release's dictionary."""
    if scheme is None:
        return None, ()
    path = folder / LABEL_DICTIONARY
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found; it maps annotations to the {scheme} labels "
                                "(pass label_scheme=None to use the raw annotations)")
    column = f"label:{scheme}"
    with open(path, encoding="utf-8-sig", newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader, [])
        if "annotation" not in header or column not in header:
            raise ValueError(f"{path} line 1: header {','.join(header)!r} lacks 'annotation' or "
                             f"{column!r}")
        key, value = header.index("annotation"), header.index(column)
        mapping = {}
        for row in reader:
            if not row:
                continue
            if len(row) != len(header) or not row[value].strip():
                raise ValueError(f"{path} line {reader.line_num}: expected {len(header)} fields "
                                 f"with a {column} label; got {','.join(row)!r}")
            mapping[row[key]] = row[value].strip()
    return mapping, tuple(sorted(set(mapping.values())))


def _read_participant(path: Path
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, tuple[str, ...]]:
    """The rows with x, y and z: times (int64 µs), samples (float32 `[n, 3]`), annotation codes
    (int64 indices into the returned annotations) and data-row numbers (0-based, blank lines not
    counted), converted `CHUNK_ROWS` at a time so that only that many rows are held as text."""
    vocabulary: dict[str, int] = {}
    parts = []
    first_row = 0
    reader = None
    try:
        with gzip.open(path, "rt", encoding="utf-8", newline="") as handle:
            reader = csv.reader(handle)
            header = next(reader, [])
            if tuple(field.strip() for field in header) != HEADER:
                raise ValueError(f"{path} line 1: header {','.join(header)!r}; expected "
                                 f"{','.join(HEADER)}")
            while chunk := list(itertools.islice(reader, CHUNK_ROWS)):
                rows = [row for row in chunk if row]
                parts.append(_convert(path, rows, first_row, vocabulary))
                first_row += len(rows)
    except (OSError, EOFError, UnicodeDecodeError) as error:
        line = reader.line_num if reader else 0
        raise ValueError(f"{path} after line {line}: unreadable gzip'd UTF-8 CSV ({error})"
                         ) from None
    if not parts:
        return (np.empty(0, np.int64), np.empty((0, 3), np.float32), np.empty(0, np.int64),
                np.empty(0, np.int64), ())
    times, samples, codes, row_numbers = (np.concatenate(column) for column in zip(*parts))
    return times, samples, codes, row_numbers, tuple(vocabulary)


def _convert(path: Path, rows: list[list[str]], first_row: int, vocabulary: dict[str, int]
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Text rows (data rows `first_row`...) -> arrays of the rows whose x, y, z are present."""
    if set(map(len, rows)) != {len(HEADER)}:
        bad = next(i for i, row in enumerate(rows) if len(row) != len(HEADER))
        raise ValueError(f"{path} line {_line_of(path, first_row + bad)}: {len(rows[bad])} "
                         f"fields, expected {len(HEADER)} ({','.join(HEADER)}): "
                         f"{','.join(rows[bad])!r}")
    times, *axes, annotations = zip(*rows)
    samples = _numbers(path, axes, first_row)
    kept = np.flatnonzero(~np.isnan(samples).any(axis=1))
    codes = np.asarray([vocabulary.setdefault(a.strip(), len(vocabulary)) for a in annotations],
                       np.int64)
    return (_times(path, np.asarray(times)[kept], first_row + kept),
            samples[kept].astype(np.float32), codes[kept], first_row + kept)


def _numbers(path: Path, axes: list[tuple[str, ...]], first_row: int) -> np.ndarray:
    """x, y, z as float64 `[n, 3]`, NaN where a field is empty or NaN (a missing sample)."""
    text = np.asarray(axes).T
    text[text == ""] = "nan"
    try:
        values = text.astype(np.float64)
    except ValueError:
        values = None
    if values is None or np.isinf(values).any():
        for row, fields in enumerate(text):
            for axis, field in zip(AXIS_NAMES, fields):
                try:
                    bad = np.isinf(float(field))
                except ValueError:
                    bad = True
                if bad:
                    raise ValueError(f"{path} line {_line_of(path, first_row + row)}: {axis} is "
                                     f"{str(field)!r}, not a finite number (empty or NaN marks "
                                     "a missing sample)")
    return values


def _times(path: Path, times: np.ndarray, row_numbers: np.ndarray) -> np.ndarray:
    """Date-times as int64 microseconds."""
    try:
        parsed = times.astype("datetime64[us]")
    except ValueError:
        parsed = None
    if parsed is None or np.isnat(parsed).any():
        for text, row in zip(times, row_numbers):
            try:
                bad = np.isnat(np.datetime64(text, "us"))
            except ValueError:
                bad = True
            if bad:
                raise ValueError(f"{path} line {_line_of(path, row)}: time {str(text)!r} is not "
                                 "a date-time like 2016-10-17 03:53:00.010000")
    return parsed.astype(np.int64)


def _line_of(path: Path, data_row: int) -> int:
    """The file line of 0-based data row `data_row` (blank lines not counted); read again only
    to report an error, so that the common path keeps no line numbers."""
    with gzip.open(path, "rt", encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle)
        next(reader)
        rows = (reader.line_num for row in reader if row)
        return next(itertools.islice(rows, data_row, None))
