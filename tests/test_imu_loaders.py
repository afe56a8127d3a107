"""Dataset loaders: fixtures in each source's exact layout, then the real files where present."""

import gzip
import importlib.util
import logging
import sys
from pathlib import Path

import numpy as np
import pytest

from img2imu_jax.imu.basicmotions import load_basicmotions
from img2imu_jax.imu.daphnet import load_daphnet
from img2imu_jax.imu.generic import load_generic
from img2imu_jax.imu.recordings import UNLABELLED

# --- Daphnet -------------------------------------------------------------------------------


def daphnet_line(k, annotation, *, silent_thigh=False):
    """Row `k` of a run as the release writes it: ms time, 3 sensors x 3 axes in mg, annotation."""
    time = int((k + 1) * 15.625)  # 15, 31, 46, ...: steps of 15 or 16 ms as in the release
    if annotation == 0:
        sensors = [0] * 9  # set-up stretches read all zeros in the release
    else:
        sensors = [k, 1000 + k, -k, 2 * k, 2000, 5, 3 * k, 3000, 7]
    if silent_thigh:
        sensors[3:6] = [0, 0, 0]
    return " ".join(str(v) for v in [time, *sensors, annotation])


def s01_lines():
    """0 stretch, 10 no-freeze + 5 freeze, 0 stretch (split), 8 rows with one malformed (one
    missing sample: bridged), a garbage line, then two missing samples (split) and 6 freezes."""
    lines = [daphnet_line(k, 0) for k in range(5)]
    lines += [daphnet_line(k, 1) for k in range(5, 15)]
    lines += [daphnet_line(k, 2) for k in range(15, 20)]
    lines += [daphnet_line(k, 0) for k in range(20, 23)]
    lines += [daphnet_line(k, 1) for k in range(23, 31)]
    lines[26] = lines[26].rsplit(" ", 2)[0]  # k=26 loses 2 columns: skipped, no split (31 ms)
    lines.insert(21, "sensor reset ???")
    lines += [daphnet_line(k, 2) for k in range(33, 39)]  # 484 -> 531 ms: 3 periods
    return lines


def s02_lines():
    """10 no-freeze rows, the thigh silent in rows 3-5; then the clock restarts (split)."""
    lines = [daphnet_line(k, 1, silent_thigh=3 <= k <= 5) for k in range(10)]
    lines += [daphnet_line(k, 1) for k in range(4)]
    return lines


@pytest.fixture
def daphnet_dir(tmp_path):
    folder = tmp_path / "dataset_fog_release" / "dataset"
    folder.mkdir(parents=True)
    (folder / "S01R01.txt").write_text("\n".join(s01_lines()) + "\n\n")
    with gzip.open(folder / "S02R01.txt.gz", "wt") as handle:
        handle.write("\n".join(s02_lines()) + "\n")
    return tmp_path


def expected_ankle(ks):
    ks = np.asarray(ks, np.float32)
    return np.stack([ks, 1000 + ks, -ks], axis=1) / 1000


def test_daphnet_splits_at_annotation_zero_and_gaps_and_skips_malformed_lines(daphnet_dir, caplog):
    with caplog.at_level(logging.WARNING):
        dataset = load_daphnet(daphnet_dir)
    assert dataset.name == "daphnet"
    assert dataset.classes == ("no_freeze", "freeze")
    assert dataset.subjects == ("S01", "S02")
    assert dataset.skipped == 2
    runs = [range(5, 20), [23, 24, 25, 27, 28, 29, 30], range(33, 39), range(10), range(4)]
    assert [r.subject for r in dataset.recordings] == ["S01", "S01", "S01", "S02", "S02"]
    for recording, ks in zip(dataset.recordings, runs):
        assert recording.sample_rate == 64.0
        assert recording.samples.dtype == np.float32 and recording.labels.dtype == np.int64
        np.testing.assert_allclose(recording.samples, expected_ankle(ks), rtol=1e-6)
    labels = [r.labels.tolist() for r in dataset.recordings]
    assert labels == [[0] * 10 + [1] * 5, [0] * 7, [1] * 6, [0] * 10, [0] * 4]
    logged = caplog.text
    assert "S01R01.txt line 22: skipped" in logged and "'sensor reset ???'" in logged
    assert "S01R01.txt line 28: skipped" in logged


def test_daphnet_sensor_choice_and_silent_sensor(daphnet_dir):
    thigh = load_daphnet(daphnet_dir, sensor="thigh")
    upper_leg = load_daphnet(daphnet_dir, sensor="upper_leg")
    trunk = load_daphnet(daphnet_dir, sensor="trunk")
    first = thigh.recordings[0]
    np.testing.assert_allclose(first.samples[0], [0.010, 2.0, 0.005], rtol=1e-6)
    np.testing.assert_allclose(trunk.recordings[0].samples[0], [0.015, 3.0, 0.007], rtol=1e-6)
    for a, b in zip(thigh.recordings, upper_leg.recordings):
        np.testing.assert_array_equal(a.samples, b.samples)
    # S02's thigh reads (0, 0, 0) mg in rows 3-5: kept, but unlabelled.
    assert thigh.recordings[3].labels.tolist() == [0, 0, 0] + [UNLABELLED] * 3 + [0] * 4
    assert load_daphnet(daphnet_dir).recordings[3].labels.tolist() == [0] * 10
    with pytest.raises(ValueError, match=r"unknown Daphnet sensor 'wrist'.*'ankle'"):
        load_daphnet(daphnet_dir, sensor="wrist")


def test_daphnet_finds_run_files_directly_and_rejects_duplicates(daphnet_dir, tmp_path):
    folder = daphnet_dir / "dataset_fog_release" / "dataset"
    direct = load_daphnet(folder)
    assert len(direct.recordings) == 5 and direct.skipped == 2
    (folder / "S02R01.txt").write_text("\n".join(s02_lines()))
    with pytest.raises(ValueError, match=r"\['S02R01.txt'\] .*both plain and gzip'd"):
        load_daphnet(daphnet_dir)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="no Daphnet run files"):
        load_daphnet(empty)
    (empty / "S05R01.txt").write_text("\n".join(daphnet_line(k, 0) for k in range(5)))
    with pytest.raises(ValueError, match="no annotated"):
        load_daphnet(empty)


# --- BasicMotions --------------------------------------------------------------------------

TS_HEADER = """#Tiny BasicMotions-like problem in sktime's .ts format.
#Second comment line.
@problemName BasicMotions
@timeStamps false
@missing false
@univariate false
@dimensions 6
@equalLength true
@seriesLength 4
@classLabel true Standing Running Walking Badminton
@data
"""


def ts_case(seed, label, dims=6, length=4):
    values = np.round(np.random.default_rng(seed).normal(size=(dims, length)), 6)
    return ":".join(",".join(repr(float(v)) for v in row) for row in values) + f":{label}", values


def write_ts(path, cases, header=TS_HEADER):
    path.write_text(header + "".join(line + "\n" for line, _ in cases))
    return path


def test_ts_file_cases_become_one_recording_each_with_the_accelerometer(tmp_path):
    cases = [ts_case(0, "Running"), ts_case(1, "Badminton"), ts_case(2, "Running")]
    dataset = load_basicmotions(write_ts(tmp_path / "one.ts", cases))
    assert dataset.name == "basicmotions"
    assert dataset.classes == ("Standing", "Running", "Walking", "Badminton")
    assert dataset.subjects == ("case01", "case02", "case03")
    for recording, (_, values), label in zip(dataset.recordings, cases, [1, 3, 1]):
        assert recording.sample_rate == 10.0
        np.testing.assert_allclose(recording.samples, values[:3].T, rtol=1e-6)
        assert recording.labels.tolist() == [label] * 4


def test_basicmotions_folder_reads_train_then_test(tmp_path):
    write_ts(tmp_path / "BasicMotions_TRAIN.ts", [ts_case(0, "Walking"), ts_case(1, "Standing")])
    write_ts(tmp_path / "BasicMotions_TEST.ts", [ts_case(2, "Badminton")])
    dataset = load_basicmotions(tmp_path)
    assert [r.subject for r in dataset.recordings] == ["case01", "case02", "case03"]
    assert [int(r.labels[0]) for r in dataset.recordings] == [2, 0, 3]


RUNNING = ts_case(0, "Running")[0]


@pytest.mark.parametrize(
    "line, message",
    [
        (RUNNING.rsplit(":", 2)[0] + ":Running", r"bad.ts line 13: 5 dimension\(s\) before"),
        (RUNNING.replace("Running", "Jumping"), r"line 13: class label 'Jumping' is not in"),
        (RUNNING.replace(",", ",abc,", 1), r"line 13: dimension 1 is 'abc', not a number"),
        (RUNNING.replace(":", ":?,", 1), r"line 13: dimension 2 is '\?', not a number"),
        (RUNNING.replace(":", ":nan,", 1), r"line 13: dimension 2 is 'nan'; values must be"),
        (RUNNING.replace(":", ",1.0:", 1), r"dimension 2 has 4 values, dimension 1 has 5"),
    ],
)
def test_bad_ts_lines_name_file_line_and_value(tmp_path, line, message):
    path = write_ts(tmp_path / "bad.ts", [ts_case(1, "Walking"), (line, None)])
    with pytest.raises(ValueError, match=message):
        load_basicmotions(path)


@pytest.mark.parametrize(
    "header, message",
    [
        (TS_HEADER.replace("@data\n", ""), r"bad.ts line 11: expected an @ header line before"),
        (TS_HEADER.replace("false\n@missing", "true\n@missing"), r"@timeStamps true' is not"),
        (TS_HEADER.replace("true Standing Running Walking Badminton", "false"), "lists no classes"),
        (TS_HEADER.replace("@dimensions 6", "@dimensions six"), "'@dimensions six' is not a pos"),
    ],
)
def test_bad_ts_headers_are_errors(tmp_path, header, message):
    with pytest.raises(ValueError, match=message):
        load_basicmotions(write_ts(tmp_path / "bad.ts", [ts_case(0, "Running")], header))


def test_ts_without_data_is_an_error(tmp_path):
    with pytest.raises(ValueError, match=r"bad.ts: no @data line"):
        load_basicmotions(write_ts(tmp_path / "bad.ts", [], TS_HEADER.replace("@data\n", "")))
    with pytest.raises(ValueError, match=r"bad.ts: no cases after @data"):
        load_basicmotions(write_ts(tmp_path / "bad.ts", []))


def test_real_installed_basicmotions_without_importing_sktime():
    if importlib.util.find_spec("sktime") is None and importlib.util.find_spec("aeon") is None:
        pytest.skip("neither sktime nor aeon is installed")
    already_imported = "sktime" in sys.modules
    dataset = load_basicmotions()
    assert already_imported or "sktime" not in sys.modules
    assert dataset.classes == ("Standing", "Running", "Walking", "Badminton")
    assert len(dataset.recordings) == 80 and len(dataset.subjects) == 80
    counts = np.bincount([int(r.labels[0]) for r in dataset.recordings], minlength=4)
    assert counts.tolist() == [20, 20, 20, 20]
    for recording in dataset.recordings:
        assert recording.samples.shape == (100, 3) and recording.sample_rate == 10.0
        assert np.isfinite(recording.samples).all()
        assert len(set(recording.labels.tolist())) == 1
    running = np.concatenate([r.samples for r in dataset.recordings if r.labels[0] == 1])
    standing = np.concatenate([r.samples for r in dataset.recordings if r.labels[0] == 0])
    assert running.std() > 5 * standing.std()
    # sktime's own test of its reader: TRAIN case 1 (0-based), dimension 2 (z), value 3.
    np.testing.assert_allclose(dataset.recordings[1].samples[3, 2], -1.898794, rtol=1e-6)


# --- generic CSV / NPZ -----------------------------------------------------------------------

GOOD_CSV = """ Timestamp , LABEL,subject,x,y,z
0.00,walk,p1,0.1,0.2,0.3
0.02,walk,p1,0.2,0.3,0.4
0.06,run,p1,0.3,0.4,0.5

0.12,run,p1,0.4,0.5,0.6
0.14,run,p2,0.5,0.6,0.7
0.10,"sit, still",p2,0.6,0.7,0.8
"""


def test_generic_csv_splits_on_subject_gaps_and_backward_time(tmp_path):
    path = tmp_path / "mine.csv"
    path.write_text(GOOD_CSV)
    dataset = load_generic(path, sample_rate=50)
    assert dataset.name == "mine"
    assert dataset.classes == ("run", "sit, still", "walk")
    assert dataset.subjects == ("p1", "p2")
    # 0.02 -> 0.06 is 2 periods (one missing sample): bridged; 0.06 -> 0.12 is 3: split.
    assert [r.samples.shape[0] for r in dataset.recordings] == [3, 1, 1, 1]
    assert [r.subject for r in dataset.recordings] == ["p1", "p1", "p2", "p2"]
    assert dataset.recordings[0].labels.tolist() == [2, 2, 0]
    np.testing.assert_allclose(dataset.recordings[3].samples, [[0.6, 0.7, 0.8]], rtol=1e-6)
    assert all(r.sample_rate == 50.0 and r.samples.dtype == np.float32 for r in dataset.recordings)


def test_generic_csv_without_timestamps_splits_only_where_the_subject_changes(tmp_path):
    path = tmp_path / "plain.csv"
    path.write_text("subject,label,x,y,z\na,1,0,0,1\na,2,0,0,1\nb,1,0,0,1\na,1,0,0,1\n")
    dataset = load_generic(path, sample_rate=20)
    assert [(r.subject, r.labels.tolist()) for r in dataset.recordings] == [
        ("a", [0, 1]), ("b", [0]), ("a", [0])
    ]


HEAD = "subject,label,x,y,z\n"


@pytest.mark.parametrize(
    "text, message",
    [
        ("", r"bad.csv: empty file"),
        ("\n\n", r"bad.csv: empty file; expected a header line subject,label,x,y,z"),
        ("subject,label,x,y,z\n", r"bad.csv: a header but no data rows"),
        ("subject,label,x,y\na,b,1,2\n", r"bad.csv line 1: header .* lacks column\(s\) z"),
        ("subject,label,x,y,z,g\n", r"bad.csv line 1: unknown column 'g'; allowed are subject"),
        ("subject,label,x,y,z,X\n", r"bad.csv line 1: column 'x' appears twice"),
        (f"{HEAD}a,b,1,2,3\na,b,1,nan,3\n", r"bad.csv line 3: column y is 'nan'; values must be"),
        (f"{HEAD}a,b,1,2,-inf\n", r"bad.csv line 2: column z is '-inf'; values must be finite"),
        (f"{HEAD}a,b,1,2,3\n\na,b,1,2,x3\n", r"bad.csv line 4: column z is 'x3', not a number"),
        ("subject,label,x,y,z\na,b,1,2\n", r"bad.csv line 2: 4 fields; the header has 5"),
        ("subject,label,x,y,z\na, ,1,2,3\n", r"bad.csv line 2: column label is empty"),
        ("subject,label,x,y,z,timestamp\na,b,1,2,3,\n", r"line 2: column timestamp is '', not a"),
    ],
)
def test_bad_generic_csv_names_file_line_and_value(tmp_path, text, message):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        load_generic(path, sample_rate=50)


def test_generic_npz_with_integer_labels_and_timestamps(tmp_path):
    path = tmp_path / "arrays.npz"
    samples = np.arange(18, dtype=np.float64).reshape(6, 3)
    np.savez(path, samples=samples, labels=np.array([10, 2, 2, 10, 2, 2]),
             subjects=np.array([7, 7, 7, 7, 8, 8]), timestamps=np.array([0, 1, 2, 5, 0, 1]) / 10)
    dataset = load_generic(path, sample_rate=10)
    assert dataset.classes == ("2", "10")
    assert dataset.subjects == ("7", "8")
    assert [r.labels.tolist() for r in dataset.recordings] == [[1, 0, 0], [1], [0, 0]]
    np.testing.assert_array_equal(dataset.recordings[1].samples, samples[3:4])


def test_generic_npz_with_string_labels(tmp_path):
    path = tmp_path / "strings.npz"
    np.savez(path, samples=np.ones((3, 3), np.float32), labels=np.array(["b", "a", "b"]),
             subjects=np.array(["s1", "s1", "s2"]))
    dataset = load_generic(path, sample_rate=25)
    assert dataset.classes == ("a", "b")
    recordings = [(r.subject, r.labels.tolist()) for r in dataset.recordings]
    assert recordings == [("s1", [1, 0]), ("s2", [1])]


def good_arrays(n=4):
    return {
        "samples": np.zeros((n, 3)),
        "labels": np.array(["a"] * n),
        "subjects": np.array(["s"] * n),
    }


@pytest.mark.parametrize(
    "change, message",
    [
        ({"labels": None}, r"bad.npz: lacks array\(s\) labels"),
        ({"extra": np.zeros(4)}, r"bad.npz: unknown array\(s\) extra; allowed are samples"),
        ({"samples": np.zeros((4, 2))}, r"bad.npz: samples is float64 \(4, 2\); expected numbers"),
        ({"samples": np.array([[0, 0, 0]] * 2 + [[0, np.nan, 0]] * 2)}, r"samples row 2 axis y is"),
        ({"subjects": np.array(["s"] * 3)}, r"bad.npz: subjects has shape \(3,\); expected \[4\]"),
        ({"labels": np.array([0.5] * 4)}, r"bad.npz: labels is float64; expected strings or"),
        ({"labels": np.array(["a", "a", "", "a"])}, r"bad.npz: labels row 2 is empty"),
        ({"labels": np.array(["a"] * 4, dtype=object)}, r"bad.npz: not a readable .npz of plain"),
        ({"timestamps": np.array([0, 1, np.inf, 3.0])}, r"bad.npz: timestamps row 2 is inf"),
        ({"samples": np.zeros((0, 3)), "labels": np.array([], str), "subjects": np.array([], str)},
         r"bad.npz: samples has no rows"),
    ],
)
def test_bad_generic_npz_names_file_array_row_and_value(tmp_path, change, message):
    arrays = {k: v for k, v in {**good_arrays(), **change}.items() if v is not None}
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(ValueError, match=message):
        load_generic(path, sample_rate=50)


def test_generic_rejects_a_bad_sample_rate_and_an_empty_npz(tmp_path):
    path = tmp_path / "empty.npz"
    path.write_bytes(b"")
    with pytest.raises(ValueError, match="empty.npz: empty file"):
        load_generic(path, sample_rate=50)
    with pytest.raises(ValueError, match="sample_rate must be a positive number of Hz; got 0"):
        load_generic(path, sample_rate=0)


# --- the real Daphnet copy in shared/ ---------------------------------------------------------


@pytest.fixture(scope="module")
def shared_daphnet() -> Path:
    for parent in Path(__file__).resolve().parents:
        folder = parent / "shared" / "datasets" / "daphnet_fog"
        if folder.is_dir() and any(folder.glob("S*R*.txt*")):
            return folder
    pytest.skip("shared/datasets/daphnet_fog is not in any parent folder of this checkout")


@pytest.fixture(scope="module")
def daphnet_lines(shared_daphnet):
    """Per run file, its rows as text fields, read independently of the loader."""
    runs = {}
    for path in sorted(shared_daphnet.glob("S*R*.txt*")):
        with (gzip.open(path, "rt") if path.suffix == ".gz" else open(path)) as handle:
            runs[path.name] = [line.split() for line in handle if line.strip()]
    return runs


def test_real_daphnet_counts_match_the_annotated_lines(shared_daphnet, daphnet_lines):
    dataset = load_daphnet(shared_daphnet)
    assert dataset.skipped == 0
    assert all(len(fields) == 11 for rows in daphnet_lines.values() for fields in rows)
    assert dataset.subjects == tuple(sorted({name[:3] for name in daphnet_lines}))
    assert len(dataset.recordings) >= len(daphnet_lines)
    for subject in dataset.subjects:
        runs = [rows for name, rows in daphnet_lines.items() if name.startswith(subject)]
        annotations = [fields[10] for rows in runs for fields in rows]
        labels = np.concatenate([r.labels for r in dataset.recordings if r.subject == subject])
        assert len(labels) == sum(a != "0" for a in annotations)
        assert (labels == 1).sum() == annotations.count("2")
    labels = np.concatenate([r.labels for r in dataset.recordings])
    assert set(np.unique(labels).tolist()) == {0, 1}
    assert 0.01 < labels.mean() < 0.25  # freeze is the rare class
    samples = np.concatenate([r.samples for r in dataset.recordings])
    assert np.isfinite(samples).all()
    assert 0.8 < np.median(np.linalg.norm(samples, axis=1)) < 1.2  # in g: gravity reads about 1


def test_real_daphnet_silent_thigh_is_unlabelled(shared_daphnet, daphnet_lines):
    rows = [f for lines in daphnet_lines.values() for f in lines]
    silent = sum(f[10] != "0" and f[4:7] == ["0", "0", "0"] for f in rows)
    sounding = sum(f[10] != "0" and f[4:7] != ["0", "0", "0"] for f in rows)
    assert silent > 0
    dataset = load_daphnet(shared_daphnet, sensor="thigh")
    # Every annotated sample the sensor recorded keeps its label, no silent one gets one (a
    # stretch that is silent throughout is left out whole).
    assert sum(int((r.labels != UNLABELLED).sum()) for r in dataset.recordings) == sounding
    for recording in dataset.recordings:
        quiet = (recording.samples == 0).all(axis=1)
        assert (recording.labels[quiet] == UNLABELLED).all()


def test_recordings_are_cut_after_each_break_and_unlabelled_stretches_dropped():
    from img2imu_jax.imu.recordings import cut_recordings, label_changes, time_gaps

    times = np.array([0.0, 1.0, 2.0, 5.0, 6.0, 6.0, 7.0, 6.5, 7.5])
    labels = np.array([0, 0, 1, 1, UNLABELLED, UNLABELLED, 2, 2, 2])
    np.testing.assert_array_equal(time_gaps(times, 1.5),
                                  [False, False, True, False, True, False, True, False])
    breaks = time_gaps(times, 1.5) | label_changes(labels)
    samples = np.arange(27, dtype=np.float64).reshape(9, 3)
    names = np.array(["a"] * 6 + ["b"] * 3)
    found = cut_recordings(samples, labels, breaks, subject=names, sample_rate=10)
    assert [r.labels.tolist() for r in found] == [[0, 0], [1], [1], [2], [2, 2]]
    assert [r.subject for r in found] == ["a", "a", "a", "b", "b"]
    np.testing.assert_array_equal(found[2].samples, samples[3:4])
    assert found[0].samples.dtype == np.float32 and found[0].sample_rate == 10.0
