"""WISDM loaders: the real files' quirks are skipped and counted, no good record is lost, and
recordings split where the activity changes or the clock jumps."""

import gzip
import logging
import math
from pathlib import Path

import numpy as np
import pytest

from img2imu_jax.imu.wisdm import (
    ACTIVITY_KEY_2019,
    V1_CLASSES,
    load_wisdm_2019,
    load_wisdm_v1,
    read_activity_key,
)

SHARED_COPY = Path("shared", "datasets", "wisdm2019_watch_accel_6act")

# v1.1 lines as the real file writes them, quirks included (line 3 holds two records: the
# backslash only wraps this source line). Good records: 19; malformed: 6.
V1_RAW = """\
33,Jogging,49105962326000,-0.6946377,12.680544,0.50395286;
33,Jogging,49106062271000,5.012288,11.264028,0.95342433;
33,Jogging,49106112167000,4.903325,10.882658,-0.08172209;\
33,Jogging,49106222305000,-0.61291564,18.496431,3.0237172;
33,Jogging,49106332290000,-1.1849703,12.108489,7.205164;
33,Jogging,0,0,0,0.0;
33,Jogging,49106442306000,1.3756552,-2.4925237,-6.510526;
33,Walking,49106542351000,-0.08,9.65,0.19;
33,Walking,49106592308000,0.34,9.62,0.23;
33,Walking,49106592308000,0.34,9.62,0.23;
33,Walking,49109002310000,0.57,9.41,0.72;
33,Walking,49109052317000,0.61,9.38,0.76;

21,Walking,117003963904000,0.65,9.51,5.13,;
21,Walking,117004013904000,0.69,9.47,5.09,;
11,Walking,1867172313000,4.4,4.4,
11,Walking,1867172363000,4.4,4.4,;
11,Walking,1867172413000,4.4,x9.8,1.2;
11,Walking,1867172463000,4.4,9.8;
11,Walking,1867172513000,0.1,9.8,0.3;
11,Walking,1867172563000,nan,9.8,0.3;
7,Downstairs,208772451722000,5.94,7.16,-0.99;
7,Downstairs,208772501722000,2.41,2.15,-3.06;
7,Downstairs,208769000000000,1.08,5.67,-1.23;
7,Downstairs,208769050000000,3.95,18.31,0.91;
11,Walking,1867172663000,0.2,9.7,0.3;
"""
V1_SKIPPED_LINES = (5, 15, 16, 17, 18, 20)

# (subject, class, length) per recording: by subject, file order within one.
V1_RECORDINGS = [
    ("7", "Downstairs", 2),  # lines 21-22; then the clock goes back 3.5 s
    ("7", "Downstairs", 2),
    ("11", "Walking", 1),  # line 19; line 25 resumes after other users' records
    ("11", "Walking", 1),
    ("21", "Walking", 2),  # trailing commas after z are good records
    ("33", "Jogging", 6),  # two records on line 3; timestamp 0 on line 5 skipped
    ("33", "Walking", 3),  # activity change; a repeated record is kept
    ("33", "Walking", 2),  # 2.41 s gap
]


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.name.endswith(".gz"):
        with gzip.open(path, "wt", encoding="ascii") as handle:
            handle.write(text)
    else:
        path.write_text(text, encoding="ascii")
    return path


def summary(dataset):
    return [(r.subject, dataset.classes[r.labels[0]], len(r.labels)) for r in dataset.recordings]


@pytest.mark.parametrize(
    "where", ["WISDM_ar_v1.1_raw.txt", "WISDM_ar_v1.1/WISDM_ar_v1.1_raw.txt.gz"]
)
def test_v1_skips_and_counts_malformed_records_and_keeps_every_good_one(tmp_path, caplog, where):
    write(tmp_path / where, V1_RAW)
    with caplog.at_level(logging.WARNING, logger="img2imu_jax.imu.wisdm"):
        dataset = load_wisdm_v1(tmp_path)
    assert dataset.name == "wisdm_v1.1"
    assert dataset.classes == V1_CLASSES == (
        "Downstairs", "Jogging", "Sitting", "Standing", "Upstairs", "Walking")
    assert dataset.skipped == len(V1_SKIPPED_LINES)
    assert summary(dataset) == V1_RECORDINGS
    assert dataset.subjects == ("11", "21", "33", "7")
    assert sum(len(r.labels) for r in dataset.recordings) == 19
    for recording in dataset.recordings:
        assert recording.samples.dtype == np.float32 and recording.labels.dtype == np.int64
        assert recording.sample_rate == 20.0
        assert len(set(recording.labels.tolist())) == 1
    jogging = dataset.recordings[5].samples
    np.testing.assert_allclose(jogging[2:4], [[4.903325, 10.882658, -0.08172209],
                                              [-0.61291564, 18.496431, 3.0237172]], rtol=1e-6)
    np.testing.assert_allclose(dataset.recordings[4].samples, [[0.65, 9.51, 5.13],
                                                               [0.69, 9.47, 5.09]], rtol=1e-6)
    name = Path(where).name
    assert f"skipped 6 malformed record(s), e.g. {tmp_path / where}:5, " in caplog.text
    assert f"{name}:15, " in caplog.text and f"{name}:16" in caplog.text


def test_v1_another_users_record_in_between_starts_a_new_recording(tmp_path):
    write(tmp_path / "WISDM_ar_v1.1_raw.txt",
          "1,Walking,1000000000,1,2,3;\n2,Walking,1050000000,4,5,6;\n1,Walking,1100000000,7,8,9;\n")
    assert summary(load_wisdm_v1(tmp_path)) == [
        ("1", "Walking", 1), ("1", "Walking", 1), ("2", "Walking", 1)]


def test_v1_unknown_activity_and_empty_file_are_errors(tmp_path):
    raw = tmp_path / "WISDM_ar_v1.1_raw.txt"
    write(raw, "1,Walking,100000000,1,2,3;\n1,LyingDown,150000000,1,2,3;\n")
    with pytest.raises(ValueError, match=r"WISDM_ar_v1.1_raw.txt line 2: unknown activity "
                                         r"'LyingDown'; known: Downstairs, Jogging"):
        load_wisdm_v1(tmp_path)
    write(raw, "1,Walking,0,0,0,0.0;\n1,Walking,5,1,2;\n")
    with pytest.raises(ValueError, match=r"raw.txt: no valid records \(2 malformed\)"):
        load_wisdm_v1(tmp_path)


def test_v1_missing_folder_or_file(tmp_path):
    with pytest.raises(ValueError, match=r"nowhere: no such directory"):
        load_wisdm_v1(tmp_path / "nowhere")
    with pytest.raises(ValueError, match=r"WISDM_ar_v1.1_raw.txt \(or .gz\) not found in .*"
                                         r"WISDM_ar_v1.1"):
        load_wisdm_v1(tmp_path)


KEY_TEXT = "".join(f"{name} = {code}\n" for code, name in ACTIVITY_KEY_2019.items())

# The release's layout: subject,code,timestamp,x,y,z; good 6, malformed 2.
TIMED_1600 = """\
1600,A,90426708196641,7.091625,-0.5916671,8.195502;
1600,A,90426757696641,4.972757,-0.15831658,6.6967316;
1600,A,90426807196641,3.25372,-0.19183542,6.107758;
1600,A,90429000000000,3.1,-0.2,6.1;
1600,B,90429050000000,1.5,2.5,3.5;
1600,B,90429100000000,4.4,4.4,;
1600,B,90429150000000,0.1,0.2;
1600,M,90429200000000,1.0,2.0,3.0;
"""
# The shared reduced copy's layout: subject,code,x,y,z; good 4, malformed 2.
UNTIMED_1601 = """\
1601,A,7.091625,-0.5916671,8.195502;
1601,A,6.38773,-2.992752E-4,-1.8769045;
1601,D,1.0,2.0,3.0;
1601,D,1.0,abc,3.0;
1601,D,1.0,2.0;
1601,D,2.0,3.0,4.0
"""
# Both layouts in one file, line by line: good 2.
MIXED_1602 = "1602,E,1.0,2.0,3.0;\n1602,E,90426708196641,1.5,2.5,3.5;\n"


def uci_tree(root: Path, *, key: str | None = KEY_TEXT) -> Path:
    """The UCI release's folders; other sensors and devices lie beside the chosen files."""
    release = root / "wisdm-dataset"
    accel = release / "raw" / "watch" / "accel"
    write(accel / "data_1600_accel_watch.txt", TIMED_1600)
    write(accel / "data_1601_accel_watch.txt.gz", UNTIMED_1601)
    write(accel / "data_1602_accel_watch.txt", MIXED_1602)
    write(accel / "notes.txt", "not data\n")
    write(release / "raw" / "watch" / "gyro" / "data_1600_gyro_watch.txt", "1600,A,1,2,3;\n")
    write(release / "raw" / "phone" / "accel" / "data_1650_accel_phone.txt", "1650,F,1,2,3;\n")
    if key is not None:
        write(release / "activity_key.txt", key)
    return release


@pytest.mark.parametrize("use_parent", [False, True])
def test_2019_reads_both_layouts_plain_and_gz(tmp_path, caplog, use_parent):
    release = uci_tree(tmp_path)
    with caplog.at_level(logging.WARNING, logger="img2imu_jax.imu.wisdm"):
        dataset = load_wisdm_2019(tmp_path if use_parent else release)
    assert dataset.name == "wisdm2019_watch_accel"
    assert dataset.classes == ("walking", "jogging", "sitting", "standing", "kicking")
    assert dataset.skipped == 4
    assert summary(dataset) == [
        ("1600", "walking", 3),
        ("1600", "walking", 1),  # 2.19 s gap
        ("1600", "jogging", 1),
        ("1600", "kicking", 1),
        ("1601", "walking", 2),  # no timestamps: split on activity change only
        ("1601", "sitting", 2),
        ("1602", "standing", 2),
    ]
    assert dataset.subjects == ("1600", "1601", "1602")
    np.testing.assert_allclose(dataset.recordings[4].samples,
                               [[7.091625, -0.5916671, 8.195502],
                                [6.38773, -2.992752e-4, -1.8769045]], rtol=1e-6)
    np.testing.assert_allclose(dataset.recordings[6].samples, [[1, 2, 3], [1.5, 2.5, 3.5]])
    assert all(r.samples.dtype == np.float32 and r.labels.dtype == np.int64
               for r in dataset.recordings)
    assert "WISDM 2019 watch accel: skipped 4 malformed record(s), e.g. " in caplog.text
    assert "data_1600_accel_watch.txt:6, " in caplog.text


def test_2019_other_device_and_sensor(tmp_path):
    release = uci_tree(tmp_path)
    phone = load_wisdm_2019(release, device="phone")
    assert (phone.name, phone.classes, summary(phone)) == (
        "wisdm2019_phone_accel", ("typing",), [("1650", "typing", 1)])
    assert load_wisdm_2019(release, sensor="gyro").subjects == ("1600",)


def test_2019_activity_key_from_file_else_built_in(tmp_path):
    flat = tmp_path / "flat"
    write(flat / "data_1601_accel_watch.txt.gz", UNTIMED_1601)
    assert load_wisdm_2019(flat).classes == ("walking", "sitting")
    write(flat / "activity_key.txt", "walk = A\n\nsit = D\n")
    assert read_activity_key(flat / "activity_key.txt") == {"A": "walk", "D": "sit"}
    assert load_wisdm_2019(flat).classes == ("walk", "sit")


@pytest.mark.parametrize(
    "key, message",
    [
        ("walking = A\njogging B\n", r"activity_key.txt line 2: expected 'name = CODE' \(one "
                                     r"letter\); found 'jogging B'"),
        ("walking = A\nstairs = AB\n", r"line 2: .*found 'stairs = AB'"),
        ("walking = A\nwalk = A\n", r"line 2: code 'A' is given twice"),
        ("\n", r"activity_key.txt: no 'name = CODE' lines"),
    ],
)
def test_2019_bad_activity_key(tmp_path, key, message):
    uci_tree(tmp_path, key=key)
    with pytest.raises(ValueError, match=message):
        load_wisdm_2019(tmp_path)


def test_2019_bad_inputs_are_errors_that_say_where(tmp_path):
    with pytest.raises(ValueError, match=r"missing: no such directory"):
        load_wisdm_2019(tmp_path / "missing")
    with pytest.raises(ValueError, match=r"device must be one of \('phone', 'watch'\) .* got "
                                         r"'wrist', 'accel'"):
        load_wisdm_2019(tmp_path, device="wrist")
    write(tmp_path / "data_1600_gyro_watch.txt", "1600,A,1,2,3;\n")
    with pytest.raises(ValueError, match=r"no data_<subject>_accel_watch.txt\[.gz\] files in "):
        load_wisdm_2019(tmp_path)
    write(tmp_path / "data_1600_accel_watch.txt", "1600,A,1.0,2.0,3.0;\n1600,N,1.0,2.0,3.0;\n")
    with pytest.raises(ValueError, match=r"data_1600_accel_watch.txt line 2: unknown activity "
                                         r"'N'; known: A, B, .* \(activity codes come from "
                                         r"the built-in WISDM 2019 activity key\)"):
        load_wisdm_2019(tmp_path)
    write(tmp_path / "activity_key.txt", "walking = A\n")
    with pytest.raises(ValueError, match=r"'N'; known: A \(activity codes come from .*"
                                         r"activity_key.txt\)"):
        load_wisdm_2019(tmp_path)
    write(tmp_path / "data_1600_accel_watch.txt", "1600,A,1.0,2.0;\n")
    with pytest.raises(ValueError, match=r"no valid records in 1 accel/watch file\(s\) "
                                         r"\(1 malformed\)"):
        load_wisdm_2019(tmp_path)


def test_a_timestamped_record_short_of_a_value_is_not_read_as_the_untimed_layout(tmp_path):
    write(tmp_path / "data_1600_accel_watch.txt",
          "1600,A,90426708196641,7.09,-0.59;\n1600,A,90426708196641,7.09,-0.59,;\n"
          "1600,A,7.09,-0.59,8.19,;\n")
    dataset = load_wisdm_2019(tmp_path)
    assert dataset.skipped == 2
    np.testing.assert_allclose(dataset.recordings[0].samples, [[7.09, -0.59, 8.19]], rtol=1e-6)


@pytest.fixture(scope="module")
def shared_copy() -> Path:
    for folder in Path(__file__).resolve().parents:
        if (folder / SHARED_COPY).is_dir():
            return folder / SHARED_COPY
    pytest.skip(f"{SHARED_COPY} is not in any folder above this checkout")


def count_good_lines(folder: Path) -> dict[str, int]:
    """Lines per activity code, read without the loader: `subject,code,x,y,z;` with numbers."""
    counts: dict[str, int] = {}
    for path in sorted(folder.glob("data_*_accel_watch.txt.gz")):
        with gzip.open(path, "rt") as handle:
            for line in handle:
                fields = line.strip().rstrip(";").split(",")
                if len(fields) == 5 and all(is_finite_number(f) for f in fields[2:]):
                    counts[fields[1]] = counts.get(fields[1], 0) + 1
    return counts


def is_finite_number(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


def test_the_shared_reduced_copy_loads_whole(shared_copy):
    dataset = load_wisdm_2019(shared_copy)
    # SOURCE.md: subjects 1600-1650; A walking, B jogging, C stairs, D sitting, E standing,
    # M kicking; each activity one block of 2400 lines; 1616 lacks B and 1642 lacks C.
    assert dataset.subjects == tuple(str(s) for s in range(1600, 1651))
    assert dataset.classes == ("walking", "jogging", "stairs", "sitting", "standing", "kicking")
    assert read_activity_key(shared_copy / "activity_key.txt") == ACTIVITY_KEY_2019
    assert dataset.skipped == 0
    assert {len(r.labels) for r in dataset.recordings} == {2400}
    assert all(np.isfinite(r.samples).all() for r in dataset.recordings)
    labels = np.concatenate([r.labels for r in dataset.recordings])
    lines = count_good_lines(shared_copy)
    assert sum(lines.values()) == len(labels) == 744_000
    codes = ["A", "B", "C", "D", "E", "M"]
    assert np.bincount(labels).tolist() == [lines[c] for c in codes] == [
        124_800, 122_400, 122_400, 124_800, 124_800, 124_800]
    first = dataset.recordings[0]
    assert (first.subject, dataset.classes[first.labels[0]]) == ("1600", "walking")
    np.testing.assert_allclose(first.samples[0], [7.091625, -0.5916671, 8.195502], rtol=1e-6)
    held = {s: {dataset.classes[r.labels[0]] for r in dataset.recordings if r.subject == s}
            for s in ("1616", "1642")}
    assert "jogging" not in held["1616"] and "stairs" not in held["1642"]
