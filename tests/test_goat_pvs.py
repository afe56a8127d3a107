"""Goat Movement and PVS loaders on small files written here in the published layouts."""

import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from img2imu_jax.imu.goat import load_goat
from img2imu_jax.imu.pvs import load_pvs

# --- Goat Movement: <goat>/pos_<P>.csv, header with ax..gz and a text label column -------------
# (the columns the only public reader found selects; a time column is optional, see goat.py)

GOAT_COLUMNS = ["ax", "ay", "az", "axhg", "ayhg", "azhg", "gx", "gy", "gz", "label"]


def _goat_value(column: int, row: int, position: str) -> float:
    """Distinct per column, row and position, so a test can tell which column was read."""
    return round(column + row / 1000 + (0.5 if position == "B" else 0.0), 6)


def _goat_lines(
    labels: list[str], position: str, time: Callable[[int], object] | None = None
) -> list[str]:
    header = ([] if time is None else ["timestamp"]) + GOAT_COLUMNS
    lines = [",".join(header)]
    for row, label in enumerate(labels):
        values = [f"{_goat_value(c, row, position):.6f}" for c in range(9)]
        lines.append(",".join(([] if time is None else [str(time(row))]) + values + [label]))
    return lines


def _write(path: Path, lines: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


G1_LABELS = (
    ["stationary"] * 60 + ["walking"] * 60 + ["eating"] * 20 + ["trotting"] * 40 + [""] * 20
    + ["running"] * 10 + ["Running"] * 30
)


@pytest.fixture
def goat_dir(tmp_path: Path) -> Path:
    root = tmp_path / "goats"
    for position in "AB":
        g1 = _goat_lines(G1_LABELS, position)
        if position == "A":
            g1[1 + 30] += ",extra"  # row 30 (line 32): one field too many
            fields = g1[1 + 150].split(",")
            fields[2] = ""  # row 150 (line 152): az missing
            g1[1 + 150] = ",".join(fields)
        _write(root / "G1" / f"pos_{position}.csv", g1)
        g2 = _goat_lines(["walking"] * 50 + ["stationary"] * 50, position)
        _write(root / "G2" / f"pos_{position}.csv", g2[:21] + ["", " , "] + g2[21:])  # blank lines
    return root


def _spans(dataset) -> list[tuple[str, int, int]]:
    return [(r.subject, int(r.labels[0]), len(r.labels)) for r in dataset.recordings]


def test_goat_recordings_split_at_label_changes_and_skipped_lines(goat_dir, caplog):
    with caplog.at_level(logging.INFO, logger="img2imu_jax.imu.goat"):
        dataset = load_goat(goat_dir)
    assert dataset.name == "goat"
    assert dataset.classes == ("stationary", "walking", "running", "trotting")
    assert dataset.subjects == ("G1", "G2")
    assert dataset.skipped == 2
    # stationary 0-59 less row 30, walking, trotting 140-179 less row 150, running 200-239 (any
    # case); eating and the empty labels are dropped.
    assert _spans(dataset) == [
        ("G1", 0, 30), ("G1", 0, 29), ("G1", 1, 60), ("G1", 3, 10), ("G1", 3, 29),
        ("G1", 2, 40), ("G2", 1, 50), ("G2", 0, 50),
    ]
    for recording in dataset.recordings:
        assert recording.samples.dtype == np.float32 and recording.labels.dtype == np.int64
        assert recording.sample_rate == 100.0
        assert len(set(recording.labels.tolist())) == 1
    walking = dataset.recordings[2].samples
    expected = [[_goat_value(c, row, "A") for c in range(3)] for row in range(60, 120)]
    np.testing.assert_allclose(walking, expected, rtol=1e-6)
    path = goat_dir / "G1" / "pos_A.csv"
    messages = [record.getMessage() for record in caplog.records]
    assert any(m.startswith(f"{path} line 32: skipped") and "11" in m for m in messages)
    assert any(m.startswith(f"{path} line 152: skipped") and "'az'" in m for m in messages)
    assert any("eating" in m for m in messages)


def test_goat_position_accelerometer_and_classes(goat_dir):
    high = load_goat(goat_dir, position="B", accelerometer="high_g")
    assert high.skipped == 0
    first = high.recordings[0]
    np.testing.assert_allclose(first.samples[0], [_goat_value(c, 0, "B") for c in (3, 4, 5)],
                               rtol=1e-6)
    five = load_goat(goat_dir, classes=("stationary", "walking", "eating", "running", "trotting"))
    assert five.classes[2] == "eating"
    assert ("G1", 2, 20) in _spans(five)


def test_goat_time_column_splits_at_gaps(tmp_path):
    def millis(row: int) -> int:
        return row * 10 + (1000 if row >= 50 else 0)

    _write(tmp_path / "ms" / "G1" / "pos_A.csv", _goat_lines(["walking"] * 100, "A", millis))
    assert _spans(load_goat(tmp_path / "ms")) == [("G1", 1, 50), ("G1", 1, 50)]

    def stamp(row: int) -> str:
        seconds = row / 100 + (5 if row >= 70 else 0)
        return str(np.datetime64("2017-05-10T09:00:00", "ms") + int(seconds * 1000))

    lines = _goat_lines(["running"] * 100, "A", stamp)
    lines[1 + 20] = "yesterday" + lines[1 + 20][lines[1 + 20].index(","):]
    _write(tmp_path / "iso" / "G1" / "pos_A.csv", lines)
    dataset = load_goat(tmp_path / "iso")
    assert dataset.skipped == 1
    assert _spans(dataset) == [("G1", 2, 20), ("G1", 2, 49), ("G1", 2, 30)]


def test_goat_logs_ten_malformed_lines_then_a_total(tmp_path, caplog):
    lines = _goat_lines(["walking"] * 40, "A")
    for row in range(5, 35, 2):  # 15 bad lines
        lines[1 + row] = lines[1 + row].replace(",", ";", 1)
    path = _write(tmp_path / "G1" / "pos_A.csv", lines)
    with caplog.at_level(logging.WARNING, logger="img2imu_jax.imu.goat"):
        dataset = load_goat(tmp_path)
    assert dataset.skipped == 15
    assert sum(len(r.labels) for r in dataset.recordings) == 25
    messages = [record.getMessage() for record in caplog.records]
    assert len(messages) == 11 and messages[-1] == f"{path}: 15 malformed lines skipped in all"


def test_goat_errors_name_what_is_missing(goat_dir, tmp_path):
    with pytest.raises(ValueError, match="no such folder"):
        load_goat(tmp_path / "absent")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no goat folders"):
        load_goat(tmp_path / "empty")
    with pytest.raises(ValueError, match=r"pos_F\.csv.*positions \['A', 'B'\]"):
        load_goat(goat_dir, position="F")
    with pytest.raises(ValueError, match="accelerometer"):
        load_goat(goat_dir, accelerometer="gyro")
    with pytest.raises(ValueError, match="distinct"):
        load_goat(goat_dir, classes=("walking", "Walking"))
    lines = _goat_lines(["walking"] * 5, "A")
    lines[0] = lines[0].replace("ay,", "a_y,", 1)
    _write(tmp_path / "nocol" / "G1" / "pos_A.csv", lines)
    with pytest.raises(ValueError, match=r"pos_A\.csv: no column 'ay'"):
        load_goat(tmp_path / "nocol")


# --- PVS: PVS <n>/dataset_gps_mpu_<side>.csv (32 columns) + dataset_labels.csv (14 one-hot) ---

PLACEMENTS = ("dashboard", "above_suspension", "below_suspension")
MPU_COLUMNS = (
    ["timestamp"]
    + [f"acc_{a}_{p}" for p in PLACEMENTS for a in "xyz"]
    + [f"gyro_{a}_{p}" for p in PLACEMENTS for a in "xyz"]
    + [f"mag_{a}_{p}" for p in PLACEMENTS[:2] for a in "xyz"]
    + [f"temp_{p}" for p in PLACEMENTS]
    + ["timestamp_gps", "latitude", "longitude", "speed"]
)
LABEL_COLUMNS = [
    "paved_road", "unpaved_road", "dirt_road", "cobblestone_road", "asphalt_road",
    "no_speed_bump", "speed_bump_asphalt", "speed_bump_cobblestone",
    "good_road_left", "regular_road_left", "bad_road_left",
    "good_road_right", "regular_road_right", "bad_road_right",
]
T0 = 1577218872.0


def _acc(side: str, placement: str, axis: str, row: int) -> float:
    """m/s^2 values distinct per side, placement, axis and row."""
    base = 100 * (side == "right") + 10 * (1 + PLACEMENTS.index(placement)) + "xyz".index(axis)
    return round(base + row / 1000, 6)


def _mpu_lines(side: str, rows: int, gap_after: int | None = None) -> list[str]:
    lines = [",".join(MPU_COLUMNS)]
    for row in range(rows):
        time = T0 + row / 100 + (1.0 if gap_after is not None and row > gap_after else 0.0)
        acc = [f"{_acc(side, p, a, row):.6f}" for p in PLACEMENTS for a in "xyz"]
        rest = ["0.5"] * 9 + ["20.0"] * 6 + ["31.0"] * 3
        gps = [f"{T0 + row // 100:.1f}", "-27.717", "-51.098", "10.4"]
        lines.append(",".join([f"{time:.2f}", *acc, *rest, *gps]))
    return lines


def _labels_on(surface: str, bump: str = "no_speed_bump", quality: str = "good") -> set[str]:
    """The label columns set to 1 on one row; `surface` may name two ("a+b", as where the
    authors' hand-set ranges overlap by a sample)."""
    surfaces = {f"{name}_road" for name in surface.split("+")}
    paving = "unpaved_road" if surface == "dirt" else "paved_road"
    return surfaces | {paving, bump, f"{quality}_road_left", "good_road_right"}


def _label_lines(rows: list[set[str]]) -> list[str]:
    return [",".join(LABEL_COLUMNS)] + [
        ",".join("1" if column in on else "0" for column in LABEL_COLUMNS) for on in rows
    ]


@pytest.fixture
def pvs_dir(tmp_path: Path) -> Path:
    root = tmp_path / "pvs"
    # PVS 1: 300 rows; asphalt, cobblestone, dirt; a cobblestone speed bump; bad lines.
    surfaces = ["asphalt"] * 99 + ["asphalt+cobblestone"] + ["cobblestone"] * 100 + ["dirt"] * 100
    bumps = ["no_speed_bump"] * 150 + ["speed_bump_cobblestone"] * 10 + ["no_speed_bump"] * 140
    quality = ["good"] * 150 + ["regular"] * 100 + ["bad"] * 50
    left = _mpu_lines("left", 300)
    fields = left[1 + 50].split(",")
    fields[2] = "abc"  # row 50 (line 52): acc_y_dashboard not a number
    left[1 + 50] = ",".join(fields)
    left[1 + 120] = left[1 + 120].rsplit(",", 3)[0]  # row 120 (line 122): GPS fields cut off
    labels = _label_lines([_labels_on(*row) for row in zip(surfaces, bumps, quality)])
    assert labels[1 + 250].startswith("0,1,1,0,0,")
    labels[1 + 250] = "0,1,2,0,0," + labels[1 + 250][10:]  # row 250 (line 252): dirt_road = 2
    trip = root / "PVS 1"
    _write(trip / "dataset_gps_mpu_left.csv", left)
    _write(trip / "dataset_gps_mpu_right.csv", _mpu_lines("right", 300))
    _write(trip / "dataset_labels.csv", labels + [""])
    # PVS 2: 200 rows, asphalt then dirt, a 1 s hole in the time after row 79.
    trip = root / "PVS 2"
    for side in ("left", "right"):
        _write(trip / f"dataset_gps_mpu_{side}.csv", _mpu_lines(side, 200, gap_after=79))
    _write(trip / "dataset_labels.csv",
           _label_lines([_labels_on(s) for s in ["asphalt"] * 120 + ["dirt"] * 80]))
    (root / "PVS 10 notes").mkdir()  # not a trip folder
    return root


def test_pvs_surface_defaults(pvs_dir, caplog):
    with caplog.at_level(logging.INFO, logger="img2imu_jax.imu.pvs"):
        dataset = load_pvs(pvs_dir)
    assert dataset.name == "pvs"
    assert dataset.classes == ("dirt_road", "cobblestone_road", "asphalt_road")
    assert dataset.subjects == ("PVS 1", "PVS 2")
    assert dataset.skipped == 3
    # PVS 1: row 99 (both asphalt and cobblestone) is unlabelled; rows 50, 120, 250 are skipped.
    assert _spans(dataset) == [
        ("PVS 1", 2, 50), ("PVS 1", 2, 48), ("PVS 1", 1, 20), ("PVS 1", 1, 79),
        ("PVS 1", 0, 50), ("PVS 1", 0, 49),
        ("PVS 2", 2, 80), ("PVS 2", 2, 40), ("PVS 2", 0, 80),
    ]
    assert sum(len(r.labels) for r in dataset.recordings) == 296 + 200
    first = dataset.recordings[0]
    assert first.sample_rate == 100.0 and first.samples.dtype == np.float32
    expected = [[_acc("left", "dashboard", a, row) for a in "xyz"] for row in range(50)]
    np.testing.assert_allclose(first.samples, expected, rtol=1e-6)
    sensor = pvs_dir / "PVS 1" / "dataset_gps_mpu_left.csv"
    labels = pvs_dir / "PVS 1" / "dataset_labels.csv"
    messages = [record.getMessage() for record in caplog.records]
    assert any(m.startswith(f"{sensor} line 52: skipped") and "acc_y_dashboard" in m
               for m in messages)
    assert any(m.startswith(f"{sensor} line 122: skipped") for m in messages)
    assert any(m.startswith(f"{labels} line 252: skipped") and "dirt_road" in m for m in messages)
    assert any(m.startswith(f"{labels}: 1 rows have no or several") for m in messages)


def test_pvs_placement_side_and_tasks(pvs_dir):
    right = load_pvs(pvs_dir, placement="below_suspension", side="right")
    assert right.skipped == 1  # only the label line; the right file is clean
    assert _spans(right)[:4] == [("PVS 1", 2, 99), ("PVS 1", 1, 100), ("PVS 1", 0, 50),
                                 ("PVS 1", 0, 49)]
    np.testing.assert_allclose(right.recordings[1].samples[0],
                               [_acc("right", "below_suspension", a, 100) for a in "xyz"],
                               rtol=1e-6)
    bumps = load_pvs(pvs_dir, task="speed_bump")
    assert bumps.classes == ("no_speed_bump", "speed_bump_asphalt", "speed_bump_cobblestone")
    assert bumps.skipped == 2  # row 250's bad field is not a speed-bump column
    assert _spans(bumps)[:5] == [("PVS 1", 0, 50), ("PVS 1", 0, 69), ("PVS 1", 0, 29),
                                 ("PVS 1", 2, 10), ("PVS 1", 0, 140)]
    quality = load_pvs(pvs_dir, task="quality", side="right")
    assert quality.classes == ("good_road_right", "regular_road_right", "bad_road_right")
    assert load_pvs(pvs_dir, task="quality").classes[2] == "bad_road_left"
    assert load_pvs(pvs_dir, task="paving").classes == ("paved_road", "unpaved_road")


def test_pvs_errors_name_what_is_wrong(pvs_dir, tmp_path):
    with pytest.raises(ValueError, match="placement 'roof'"):
        load_pvs(pvs_dir, placement="roof")
    with pytest.raises(ValueError, match="task"):
        load_pvs(pvs_dir, task="potholes")
    with pytest.raises(ValueError, match="no such folder"):
        load_pvs(tmp_path / "absent")
    with pytest.raises(ValueError, match="no trip folders"):
        load_pvs(tmp_path)
    labels = pvs_dir / "PVS 2" / "dataset_labels.csv"
    lines = labels.read_text().splitlines()
    labels.write_text("\n".join(lines[:-1]) + "\n")
    with pytest.raises(ValueError, match=r"200 data rows but .*dataset_labels\.csv has 199"):
        load_pvs(pvs_dir)
    labels.unlink()
    with pytest.raises(ValueError, match=r"PVS 2.dataset_labels\.csv: no such file"):
        load_pvs(pvs_dir)
    sensor = pvs_dir / "PVS 1" / "dataset_gps_mpu_right.csv"
    sensor.write_text(sensor.read_text().replace("acc_z_above_suspension", "acc_z_above", 1))
    with pytest.raises(ValueError, match=r"no column\(s\) \['acc_z_above_suspension'\]"):
        load_pvs(pvs_dir, placement="above_suspension", side="right")
