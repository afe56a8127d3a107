"""Capture-24 loader on participant files written exactly as the release writes them."""

import csv
import datetime
import gzip
import io

import numpy as np
import pytest

from img2imu_jax.imu.capture24 import load_capture24
from img2imu_jax.imu.recordings import UNLABELLED
from img2imu_jax.imu.registry import load_dataset

START = datetime.datetime(2016, 10, 17, 3, 53)
SLEEP = "7030 sleeping;MET 0.95"
DESK = "occupation;office and administrative support;11580 office/computer work general;MET 1.5"
WALK = "home activity;miscellaneous;walking;17150 walking household, no loads;MET 2.0"  # a comma
DICTIONARY = [
    ("annotation", "label:Willetts2018", "label:Walmsley2020"),
    (SLEEP, "sleep", "sleep"),
    (DESK, "sit-stand", "sedentary"),
    (WALK, "walking", "light"),
    ("home activity;household chores;5035 kitchen activity;MET 3.3", "mixed", "light"),
]


def row(k, annotation, *, missing=False, time_shift_ms=0):
    """Sample `k` as the release writes it: µs date-time, x/y/z in g (empty when missing)."""
    time = START + datetime.timedelta(milliseconds=10 * k + time_shift_ms)
    xyz = ["", "", ""] if missing else [f"{k / 100:.8f}", f"{1 - k / 1000:.8f}", f"{-k / 50:.8f}"]
    return [time.strftime("%Y-%m-%d %H:%M:%S.%f"), *xyz, annotation]


def csv_text(rows, header=("time", "x", "y", "z", "annotation")):
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows([header, *rows])
    return out.getvalue()


def write_gz(path, text):
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        handle.write(text)


def p001_rows():
    """k 0-9 sleep; k 10-13 unannotated; k 14 missing (bridged); k 15-19 desk; k 20 missing and
    k 21's y NaN (split); k 22-25 walk; then the clock jumps 1 s (split) for k 26-28 walk, and
    4 s more for k 29-32, unannotated: a stretch with no label, left out."""
    rows = [row(k, SLEEP) for k in range(10)] + [row(k, "") for k in range(10, 14)]
    rows += [row(14, DESK, missing=True)] + [row(k, DESK) for k in range(15, 20)]
    rows += [row(20, WALK, missing=True), row(21, WALK)] + [row(k, WALK) for k in range(22, 26)]
    rows[-5][2] = "NaN"  # k 21: a NaN in one axis makes the sample missing too
    rows += [row(k, WALK, time_shift_ms=1000) for k in range(26, 29)]
    return rows + [row(k, "", time_shift_ms=5000) for k in range(29, 33)]


@pytest.fixture
def capture24_dir(tmp_path):
    folder = tmp_path / "capture24"
    folder.mkdir()
    write_gz(folder / "P001.csv.gz", csv_text(p001_rows()))
    # P002's clock goes back once (split there).
    p002 = [row(k, SLEEP) for k in range(5)]
    p002 += [row(k, SLEEP, time_shift_ms=-100) for k in range(5, 8)]
    write_gz(folder / "P002.csv.gz", csv_text(p002))
    with open(folder / "annotation-label-dictionary.csv", "w", newline="") as handle:
        csv.writer(handle).writerows(DICTIONARY)
    (folder / "metadata.csv").write_text("pid,age,sex\nP001,38-52,F\nP002,30-37,F\n")
    return tmp_path


def expected_samples(ks):
    ks = np.asarray(ks, np.float64)
    return np.stack([ks / 100, 1 - ks / 1000, -ks / 50], axis=1)


def test_capture24_splits_at_gaps_bridges_one_missing_sample_and_maps_labels(capture24_dir):
    dataset = load_capture24(capture24_dir)
    assert dataset.name == "capture24"
    assert dataset.classes == ("light", "sedentary", "sleep")
    assert dataset.subjects == ("P001", "P002")
    pieces = [[*range(14), *range(15, 20)], range(22, 26), range(26, 29), range(5), range(5, 8)]
    assert [r.subject for r in dataset.recordings] == ["P001"] * 3 + ["P002"] * 2
    sleep, sedentary, light = 2, 1, 0
    labels = [[sleep] * 10 + [UNLABELLED] * 4 + [sedentary] * 5, [light] * 4, [light] * 3,
              [sleep] * 5, [sleep] * 3]
    for recording, ks, expected in zip(dataset.recordings, pieces, labels):
        assert recording.sample_rate == 100.0
        assert recording.samples.dtype == np.float32 and recording.labels.dtype == np.int64
        np.testing.assert_allclose(recording.samples, expected_samples(ks), rtol=1e-6, atol=1e-7)
        assert recording.labels.tolist() == expected


def test_capture24_raw_annotations_another_scheme_and_a_subset(capture24_dir):
    raw = load_capture24(capture24_dir, label_scheme=None, participants={"P001"})
    assert raw.classes == tuple(sorted([SLEEP, DESK, WALK])) and raw.subjects == ("P001",)
    assert raw.recordings[1].labels.tolist() == [raw.classes.index(WALK)] * 4
    willetts = load_capture24(capture24_dir / "capture24", label_scheme="Willetts2018")
    assert willetts.classes == ("mixed", "sit-stand", "sleep", "walking")
    with pytest.raises(ValueError, match="no file for participant.* P003"):
        load_capture24(capture24_dir, participants={"P001", "P003"})
    with pytest.raises(ValueError, match="lacks 'annotation' or 'label:Doherty2018'"):
        load_capture24(capture24_dir, label_scheme="Doherty2018")


def test_capture24_is_in_the_registry(capture24_dir):
    dataset = load_dataset("capture24", capture24_dir)
    assert dataset.classes == ("light", "sedentary", "sleep") and len(dataset.recordings) == 5


def write_p001(folder, rows, header=("time", "x", "y", "z", "annotation")):
    write_gz(folder / "capture24" / "P001.csv.gz", csv_text(rows, header))


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda rows: rows.__setitem__(3, rows[3][:4]),
         r"P001.csv.gz line 5: 4 fields, expected 5"),
        (lambda rows: rows[3].__setitem__(2, "0.5g"), r"line 5: y is '0.5g', not a finite number"),
        (lambda rows: rows[6].__setitem__(3, "inf"), r"line 8: z is 'inf', not a finite number"),
        (lambda rows: rows[2].__setitem__(0, "17/10/2016 03:53"),
         r"line 4: time '17/10/2016 03:53' is not a date-time"),
        (lambda rows: rows[4].__setitem__(0, ""), r"line 6: time '' is not a date-time"),
        (lambda rows: rows[7].__setitem__(4, "8010 dancing;MET 5.0"),
         r"line 9: annotation '8010 dancing;MET 5.0' is not in .*annotation-label-dictionary"),
    ],
)
def test_bad_capture24_lines_name_file_line_and_value(capture24_dir, change, message):
    rows = p001_rows()
    change(rows)
    write_p001(capture24_dir, rows)
    with pytest.raises(ValueError, match=message):
        load_capture24(capture24_dir)


def test_bad_capture24_files_are_clear_errors(capture24_dir, tmp_path):
    write_p001(capture24_dir, p001_rows(), header=("time", "x", "y", "z"))
    with pytest.raises(ValueError, match=r"P001.csv.gz line 1: header 'time,x,y,z'; expected"):
        load_capture24(capture24_dir)
    good = gzip.compress(csv_text(p001_rows()).encode())
    (capture24_dir / "capture24" / "P001.csv.gz").write_bytes(good[: len(good) // 2])
    with pytest.raises(ValueError, match=r"P001.csv.gz after line \d+: unreadable gzip"):
        load_capture24(capture24_dir)
    with pytest.raises(FileNotFoundError, match="no Capture-24 participant files"):
        load_capture24(tmp_path / "capture24" / "nothing-here")
    (capture24_dir / "capture24" / "annotation-label-dictionary.csv").unlink()
    with pytest.raises(FileNotFoundError, match="label_scheme=None"):
        load_capture24(capture24_dir)
