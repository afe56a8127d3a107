"""CSV column choice and timestamps: what phone loggers write reaches the spectrogram."""

import logging

import numpy as np
import pytest

from img2imu_jax.imu.xyz_csv import read_xyz_csv


def write(tmp_path, header, rows, name="log.csv"):
    path = tmp_path / name
    path.write_text(header + "\n" + "\n".join(",".join(map(str, row)) for row in rows) + "\n")
    return path


def test_header_names_find_the_axes_and_a_regular_timestamp(tmp_path):
    rng = np.random.default_rng(0)
    xyz = rng.normal(size=(40, 3)).round(4)
    rows = [(f"{1_700_000_000_000 + 20 * i}", "walking", *xyz[i, ::-1]) for i in range(40)]
    path = write(tmp_path, "timestamp_ms,activity,accel_z (m/s^2),accel_y (m/s^2),"
                           "accel_x (m/s^2)", rows)
    recording = read_xyz_csv(path)
    np.testing.assert_allclose(recording.samples, xyz, rtol=1e-6)
    assert recording.sample_rate == pytest.approx(50.0) and not recording.resampled


def test_irregular_timestamps_are_interpolated_and_said_so(tmp_path, caplog):
    rng = np.random.default_rng(1)
    times = np.cumsum(rng.uniform(0.015, 0.025, size=200))  # ~50 Hz with jitter, in seconds
    times -= times[0]
    wave = np.stack([np.sin(2 * np.pi * 1.5 * times), np.cos(2 * np.pi * 1.5 * times),
                     0.5 * np.ones_like(times)], axis=1)
    path = write(tmp_path, "Time (s),X,Y,Z", [(f"{t:.6f}", *map(float, w))
                                              for t, w in zip(times, wave)])
    with caplog.at_level(logging.INFO, logger="img2imu_jax"):
        recording = read_xyz_csv(path, sample_rate=40.0)
    assert recording.resampled and recording.sample_rate == 40.0
    grid = np.arange(len(recording.samples)) / 40.0
    assert grid[-1] <= times[-1] < grid[-1] + 1 / 40
    expected = np.stack([np.sin(2 * np.pi * 1.5 * grid), np.cos(2 * np.pi * 1.5 * grid),
                         0.5 * np.ones_like(grid)], axis=1)
    np.testing.assert_allclose(recording.samples, expected, atol=0.01)  # linear-interp error
    assert "interpolated 200 samples onto a regular 40 Hz grid" in caplog.text


@pytest.mark.parametrize("columns", ["ax,ay,az,t", "2,3,4,1"])
def test_columns_by_name_or_number(tmp_path, columns):
    rows = [(0.02 * i, i, 10 + i, 20 + i, "x") for i in range(5)]
    path = write(tmp_path, "t,ax,ay,az,note", rows)
    recording = read_xyz_csv(path, columns=columns)
    np.testing.assert_array_equal(recording.samples[:, 1], np.arange(10, 15))
    assert recording.sample_rate == pytest.approx(50.0)


@pytest.mark.parametrize(
    "header, rows, columns, message",
    [
        ("t,a,b,c", [(0, 1, 2, 3)] * 3, None, r"cannot tell which columns are x, y, z "
         r"\(header t, a, b, c\); pass --columns"),
        ("t,x,y,z", [(0, 1, 2, 3)] * 3, "x,y,w", r"no column 'w' \(columns: t, x, y, z\)"),
        ("t,x,y,z", [(0, 1, 2, 3), (0.1, 1, 2, 3), (0.1, 1, 2, 3)], None,
         r"log.csv line 4: timestamps must increase"),
        ("time,x,y,z,label", [(0, 1, 2, 3, "a"), (1, 1, "?", 3, "b")], None,
         r"log.csv line 3: column 3 \(y\) is '\?', not a number"),
    ],
)
def test_bad_columns_and_timestamps_name_the_problem(tmp_path, header, rows, columns, message):
    with pytest.raises(ValueError, match=message):
        read_xyz_csv(write(tmp_path, header, rows), columns=columns)
