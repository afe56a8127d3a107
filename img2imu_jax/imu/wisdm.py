"""Loaders for the two WISDM accelerometer datasets (Fordham WISDM Lab), read as published.

- WISDM v1.1 "Activity Prediction" (Kwapisz et al. 2011): one file `WISDM_ar_v1.1_raw.txt`,
  36 users, 6 activities, phone in the trouser pocket; the paper's WISDM task.
- WISDM 2019 "Smartphone and Smartwatch Activity and Biometrics" (UCI 507): one file per
  subject, device and sensor, 51 subjects, 18 activities coded A-S.

Both write records `subject,activity,timestamp,x,y,z;` at a nominal 20 Hz with nanosecond
timestamps (some reduced 2019 copies drop the timestamp). A Recording is a run of consecutive
good records of one file, subject and activity (another subject's record in between ends one);
a new one also starts where two consecutive timestamps are more than `MAX_GAP_S` apart either
way. v1.1 samples arrive 50-100 ms apart, so 1 s (20 nominal samples) is far above that jitter yet
shorter than any window the paper uses (2-30 s): windows never straddle a missing stretch or a
clock jump. Without timestamps only the activity splits. Samples stay in file order, repeats kept.

Malformed records (a field missing, empty, non-numeric or non-finite, timestamp 0) are skipped,
counted in `IMUDataset.skipped` and logged with examples; an unknown activity is a `ValueError`,
since it means the file is not the dataset it is read as.
"""

from __future__ import annotations

import gzip
import logging
import math
import os
import re
from collections.abc import Collection
from pathlib import Path
from typing import IO, NamedTuple

import numpy as np

from img2imu_jax.imu.recordings import IMUDataset, Recording, cut_recordings, label_changes

log = logging.getLogger(__name__)

SAMPLE_RATE = 20.0
MAX_GAP_S = 1.0
V1_FILE = "WISDM_ar_v1.1_raw.txt"
# The authors' Android demo orders the classes alphabetically (index 1 is Jogging).
V1_CLASSES = ("Downstairs", "Jogging", "Sitting", "Standing", "Upstairs", "Walking")
# `activity_key.txt` of the 2019 release, used when a copy lacks it (there is no code N).
ACTIVITY_KEY_2019 = {
    "A": "walking", "B": "jogging", "C": "stairs", "D": "sitting", "E": "standing",
    "F": "typing", "G": "teeth", "H": "soup", "I": "chips", "J": "pasta", "K": "drinking",
    "L": "sandwich", "M": "kicking", "O": "catch", "P": "dribbling", "Q": "writing",
    "R": "clapping", "S": "folding",
}
DEVICES = ("phone", "watch")
SENSORS = ("accel", "gyro")

_MAX_GAP_NS = int(MAX_GAP_S * 1e9)
# A bare integer this long cannot be an acceleration: it is a timestamp, so a 5-field record
# holding one in the x column is a timestamped record that lost a value, not the no-timestamp
# layout.
_TIMESTAMP_DIGITS = 10


class _Records(NamedTuple):
    """The good records of one file, as columns."""

    subjects: np.ndarray  # int64
    activities: list[str]
    timestamps: np.ndarray  # int64 ns; 0 where the record has none
    samples: np.ndarray  # float32 [n, 3]
    skipped: list[int]  # line numbers of malformed records


def load_wisdm_v1(data_dir: str | os.PathLike) -> IMUDataset:
    """Reads WISDM v1.1 from `data_dir` or `data_dir/WISDM_ar_v1.1/` (plain or `.gz`)."""
    root = _existing_dir(data_dir)
    places = [root / V1_FILE, root / "WISDM_ar_v1.1" / V1_FILE]
    path = next(
        (candidate for place in places for candidate in (place, _gz(place)) if candidate.is_file()),
        None,
    )
    if path is None:
        raise ValueError(f"{root}: {V1_FILE} (or .gz) not found in {root} or {places[1].parent}")
    records = _read(path, V1_CLASSES, timestamp_optional=False)
    if not records.activities:
        raise ValueError(f"{path}: no valid records ({len(records.skipped)} malformed)")
    index = {name: i for i, name in enumerate(V1_CLASSES)}
    labels = np.array([index[name] for name in records.activities], np.int64)
    _log_skipped("WISDM v1.1", [(path, n) for n in records.skipped])
    return IMUDataset(
        name="wisdm_v1.1",
        classes=V1_CLASSES,
        recordings=_by_subject(_split(records, labels)),
        skipped=len(records.skipped),
    )


def load_wisdm_2019(
    data_dir: str | os.PathLike, *, device: str = "watch", sensor: str = "accel"
) -> IMUDataset:
    """Reads one device and sensor of WISDM 2019; classes are the codes present, in code order.

    Files `data_<subject>_<sensor>_<device>.txt[.gz]` are taken from `data_dir`, else from
    `data_dir/raw/<device>/<sensor>/` or `data_dir/wisdm-dataset/raw/<device>/<sensor>/`.
    Activity names come from the first `activity_key.txt` beside the files, in `data_dir` or in
    `data_dir/wisdm-dataset/`, else from `ACTIVITY_KEY_2019`.
    """
    if device not in DEVICES or sensor not in SENSORS:
        raise ValueError(
            f"device must be one of {DEVICES} and sensor one of {SENSORS}; got {device!r}, "
            f"{sensor!r}"
        )
    root = _existing_dir(data_dir)
    paths = _files_2019(root, device, sensor)
    key, key_source = _activity_key(
        [paths[0].parent / "activity_key.txt", root / "activity_key.txt",
         root / "wisdm-dataset" / "activity_key.txt"]
    )
    read = []
    for path in paths:
        try:
            read.append((path, _read(path, key, timestamp_optional=True)))
        except _UnknownActivity as error:
            raise ValueError(f"{error} (activity codes come from {key_source})") from None
    codes = sorted({code for _, records in read for code in records.activities})
    skipped = [(path, n) for path, records in read for n in records.skipped]
    if not codes:
        raise ValueError(
            f"{root}: no valid records in {len(paths)} {sensor}/{device} file(s) "
            f"({len(skipped)} malformed)"
        )
    index = {code: i for i, code in enumerate(codes)}
    recordings = []
    for _, records in read:
        labels = np.array([index[code] for code in records.activities], np.int64)
        recordings += _split(records, labels)
    _log_skipped(f"WISDM 2019 {device} {sensor}", skipped)
    return IMUDataset(
        name=f"wisdm2019_{device}_{sensor}",
        classes=tuple(key[code] for code in codes),
        recordings=_by_subject(recordings),
        skipped=len(skipped),
    )


def read_activity_key(path: str | os.PathLike) -> dict[str, str]:
    """Parses `activity_key.txt` (`walking = A` per line) into {code: name}."""
    key: dict[str, str] = {}
    with open(path, encoding="utf-8-sig") as handle:
        for number, text in enumerate(handle, start=1):
            if not text.strip():
                continue
            name, equals, code = (part.strip() for part in text.partition("="))
            if not equals or not name or len(code) != 1 or not code.isalpha():
                raise ValueError(
                    f"{path} line {number}: expected 'name = CODE' (one letter); found "
                    f"{text.strip()!r}"
                )
            if code in key:
                raise ValueError(f"{path} line {number}: code {code!r} is given twice")
            key[code] = name
    if not key:
        raise ValueError(f"{path}: no 'name = CODE' lines")
    return key


class _UnknownActivity(ValueError):
    """An activity outside the dataset's list; the caller adds where that list came from."""


def _existing_dir(data_dir: str | os.PathLike) -> Path:
    root = Path(data_dir)
    if not root.is_dir():
        raise ValueError(f"{root}: no such directory (expected a WISDM data folder)")
    return root


def _gz(path: Path) -> Path:
    return path.with_name(path.name + ".gz")


def _files_2019(root: Path, device: str, sensor: str) -> list[Path]:
    """The subject files of the first folder that has any, plain preferred over `.gz`."""
    pattern = re.compile(rf"data_(\d+)_{sensor}_{device}\.txt(\.gz)?")
    raw = Path("raw", device, sensor)
    folders = [root, root / raw, root / "wisdm-dataset" / raw]
    for folder in folders:
        if not folder.is_dir():
            continue
        by_subject: dict[int, Path] = {}
        for path in sorted(folder.iterdir()):  # x.txt sorts before x.txt.gz
            match = pattern.fullmatch(path.name)
            if match and path.is_file():
                by_subject.setdefault(int(match.group(1)), path)
        if by_subject:
            return [by_subject[subject] for subject in sorted(by_subject)]
    raise ValueError(
        f"{root}: no data_<subject>_{sensor}_{device}.txt[.gz] files in "
        + ", ".join(str(folder) for folder in folders)
    )


def _activity_key(candidates: list[Path]) -> tuple[dict[str, str], str]:
    for path in candidates:
        if path.is_file():
            return read_activity_key(path), str(path)
    return dict(ACTIVITY_KEY_2019), "the built-in WISDM 2019 activity key"


def _open_text(path: Path) -> IO[str]:
    # Undecodable bytes become U+FFFD, which makes just their record malformed.
    if path.name.endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8-sig", errors="replace")
    return open(path, encoding="utf-8-sig", errors="replace")


def _read(path: Path, known: Collection[str], *, timestamp_optional: bool) -> _Records:
    """Every `;`-separated record of every line: good ones as columns, bad ones as line numbers."""
    subjects: list[int] = []
    activities: list[str] = []
    times: list[int] = []
    values: list[tuple[float, float, float]] = []
    skipped: list[int] = []
    with _open_text(path) as handle:
        for number, line in enumerate(handle, start=1):
            for text in line.split(";"):
                if not text.strip():
                    continue
                record = _parse(text, timestamp_optional)
                if record is None:
                    skipped.append(number)
                    continue
                subject, activity, time, xyz = record
                if activity not in known:
                    raise _UnknownActivity(
                        f"{path} line {number}: unknown activity {activity!r}; known: "
                        + ", ".join(known)
                    )
                subjects.append(subject)
                activities.append(activity)
                times.append(time)
                values.append(xyz)
    return _Records(
        np.array(subjects, np.int64),
        activities,
        np.array(times, np.int64),
        np.array(values, np.float32).reshape(-1, 3),
        skipped,
    )


def _parse(
    text: str, timestamp_optional: bool
) -> tuple[int, str, int, tuple[float, float, float]] | None:
    """`subject,activity[,timestamp],x,y,z`, maybe with a trailing comma; None if malformed."""
    fields = text.split(",")
    if len(fields) > 1 and not fields[-1].strip():
        fields.pop()  # "...,z,;" (v1.1 subject 21); "...,y,;" is then one field short
    if len(fields) == 6:
        time_field: str | None = fields.pop(2)
    elif len(fields) == 5 and timestamp_optional and not _is_timestamp(fields[2]):
        time_field = None
    else:
        return None
    try:
        subject = int(fields[0])
        time = 0 if time_field is None else int(time_field)
        xyz = (float(fields[2]), float(fields[3]), float(fields[4]))
    except ValueError:
        return None
    activity = fields[1].strip()
    if (time_field is not None and time <= 0) or not activity.isalpha():
        return None
    if not all(math.isfinite(value) for value in xyz):
        return None
    return subject, activity, time, xyz


def _is_timestamp(field: str) -> bool:
    field = field.strip()
    return field.isdigit() and len(field) >= _TIMESTAMP_DIGITS


def _split(records: _Records, labels: np.ndarray) -> list[Recording]:
    """Cuts one file's records where subject or label changes or the clock jumps over 1 s."""
    times = records.timestamps
    timed = (times[1:] > 0) & (times[:-1] > 0)
    # This format's gap rule: a jump of over 1 s either way (repeated times are kept).
    breaks = (label_changes(records.subjects) | label_changes(labels)
              | (timed & (np.abs(np.diff(times)) > _MAX_GAP_NS)))
    return cut_recordings(records.samples, labels, breaks, subject=records.subjects,
                          sample_rate=SAMPLE_RATE)


def _by_subject(recordings: list[Recording]) -> tuple[Recording, ...]:
    """Groups by subject (numerically), keeping file order within each."""
    return tuple(sorted(recordings, key=lambda recording: int(recording.subject)))


def _log_skipped(name: str, skipped: list[tuple[Path, int]]) -> None:
    if skipped:
        examples = ", ".join(f"{path}:{number}" for path, number in skipped[:3])
        log.warning("%s: skipped %d malformed record(s), e.g. %s", name, len(skipped), examples)
