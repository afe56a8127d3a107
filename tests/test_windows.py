"""Windowing: counts, label rules, resampling parity with scipy, subjects carried."""

import numpy as np
import pytest
import scipy.signal

from img2imu_jax.imu.recordings import UNLABELLED, IMUDataset, Recording
from img2imu_jax.imu.windows import make_windows


def recording(labels, rate=50.0, subject="s1", seed=0):
    labels = np.asarray(labels, np.int64)
    samples = np.random.default_rng(seed).normal(size=(len(labels), 3)).astype(np.float32)
    return Recording(samples, labels, subject, rate)


def dataset(*recordings, classes=("a", "b", "c")):
    return IMUDataset("toy", classes, tuple(recordings))


def test_window_count_hop_and_subjects():
    data = dataset(recording([0] * 1000, subject="s1"), recording([1] * 260, subject="s2"))
    windows = make_windows(data, seconds=2.0)  # 100 samples, hop 50
    assert windows.samples.shape == ((1000 - 100) // 50 + 1 + (260 - 100) // 50 + 1, 100, 3)
    assert list(windows.subjects).count("s1") == 19 and list(windows.subjects).count("s2") == 4
    np.testing.assert_array_equal(windows.samples[1], data.recordings[0].samples[50:150])
    assert windows.labels[-1] == 1 and windows.classes == ("a", "b", "c")


def test_single_and_majority_label_rules_and_unlabelled_samples():
    labels = [0] * 70 + [1] * 30 + [2] * 100 + [UNLABELLED] * 10 + [2] * 100
    data = dataset(recording(labels))
    single = make_windows(data, seconds=2.0, label_rule="single")
    majority = make_windows(data, seconds=2.0, label_rule="majority")
    # Windows start at 0, 50, 100, 150, 200; the last two touch the unlabelled stretch.
    assert list(single.labels) == [2]  # only [100, 200) is pure
    assert list(majority.labels) == [0, 2, 2]  # 70/30 → 0; 20/30/50 → 2; pure 2
    with pytest.raises(ValueError, match="label_rule"):
        make_windows(data, seconds=2.0, label_rule="any")


def test_resampling_matches_scipy_and_maps_labels_by_time():
    rec = recording([0] * 200 + [1] * 200, rate=20.0)
    windows = make_windows(dataset(rec), seconds=4.0, overlap=0.0, label_rule="majority")
    expected = scipy.signal.resample_poly(rec.samples.astype(np.float64), 5, 2, axis=0)
    assert windows.samples.shape[1] == 200
    np.testing.assert_allclose(windows.samples.reshape(-1, 3), expected[:1000], rtol=1e-5,
                               atol=1e-6)
    # 50 Hz sample j takes the label of 20 Hz sample floor(j · 2/5): the change lands at 500;
    # the window [400, 600) is a 100/100 tie, which goes to the lower class.
    assert list(windows.labels) == [0, 0, 0, 1, 1]


def test_too_short_recordings_give_a_clear_error():
    with pytest.raises(ValueError, match="no 10.0 s window fits"):
        make_windows(dataset(recording([0] * 100)), seconds=10.0)
