"""Bad user input: every problem is a ValueError that names what is wrong and where."""

import numpy as np
import pytest

from img2imu_jax.imu.validation import validate_windows
from img2imu_jax.imu.xyz_csv import read_xyz_csv


def good(shape=(20, 3)):
    return np.random.default_rng(0).normal(size=shape)


@pytest.mark.parametrize(
    "windows, message",
    [
        (good((20,)), r"shape \(20,\)"),
        (good((20, 4)), r"3 accelerometer axes .* got 4"),
        (good((2, 20, 2)), r"got 2"),
        (good((1, 3)), r"1 sample\(s\); at least 2"),
        (good((4, 0, 3)), r"0 sample\(s\)"),
        (np.array([["1", "2", "3"], ["4", "x", "6"]]), r"real numbers; got an array of <U1"),
        (np.array([[1.0, True, 2.0]] * 3, dtype=object), r"found True at index \(0, 1\)"),
        (np.array([[1.0, None, 2.0]] * 3, dtype=object), r"found None at index \(0, 1\)"),
        (np.ones((5, 3), dtype=complex), r"real numbers; got an array of complex128"),
        (np.ones((5, 3), dtype=bool), r"real numbers; got an array of bool"),
    ],
)
def test_bad_arrays_are_value_errors_that_say_why(windows, message):
    with pytest.raises(ValueError, match=message):
        validate_windows(windows)


def test_non_finite_values_are_located():
    single = good()
    single[7, 1] = np.nan
    with pytest.raises(ValueError, match=r"watch.npy: sample 7: axis y is nan; .*\(1 non-finite"):
        validate_windows(single, source="watch.npy")
    batch = good((3, 20, 3))
    batch[2, 4, 2] = np.inf
    batch[2, 5, 0] = -np.inf
    with pytest.raises(ValueError, match=r"watch.npy: window \(2,\), sample 4: axis z is inf; .*\(2 non"):
        validate_windows(batch, source="watch.npy")


def test_good_input_comes_back_as_float32():
    windows = validate_windows([[1, 2, 3], [4, 5, 6]])
    assert windows.dtype == np.float32
    np.testing.assert_array_equal(windows, [[1, 2, 3], [4, 5, 6]])
    objects = validate_windows(np.array([[1, 2.5, 3]] * 2, dtype=object))
    assert objects.dtype == np.float32


def write(tmp_path, text, name="walk.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_csv_with_and_without_header(tmp_path):
    rows = "0.1,0.2,9.8\n0.3,-0.1,9.7\n\n0.2,0.0,9.9\n"
    plain = read_xyz_csv(write(tmp_path, rows)).samples
    with_header = read_xyz_csv(write(tmp_path, "x, y, z\n" + rows, "header.csv")).samples
    np.testing.assert_allclose(plain, [[0.1, 0.2, 9.8], [0.3, -0.1, 9.7], [0.2, 0.0, 9.9]], rtol=1e-6)
    np.testing.assert_array_equal(plain, with_header)


@pytest.mark.parametrize(
    "text, message",
    [
        ("1,2,3\n4,abc,6\n", r"walk.csv line 2: column 2 \(y\) is 'abc', not a number"),
        ("x,y,z\n1,2,3\n4,5\n", r"walk.csv line 3: expected 3 columns \(x, y, z\); found 2"),
        ("1,2,3\n4,5,6,7\n", r"line 2: .* found 4"),
        ("x,y,z\n1,2,3\n4,5,6\n7,8,nan\n", r"walk.csv line 4: axis z is nan"),
        ("1,2,3\n\n4,inf,6\n", r"walk.csv line 3: axis y is inf"),
        ("x,y,z\n", r"walk.csv: no data rows"),
        ("", r"walk.csv: no data rows"),
        ("x,y,z\n1,2,3\n", r"walk.csv: windows have 1 sample"),
        ("a,b,c\nx,y,z\n1,2,3\n", r"line 2: column 1 \(x\) is 'x'"),
    ],
)
def test_bad_csv_names_the_file_and_line(tmp_path, text, message):
    with pytest.raises(ValueError, match=message):
        read_xyz_csv(write(tmp_path, text))
