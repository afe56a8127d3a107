"""Sensor pre-training corpus: windows, resampling and per-axis statistics against numpy/scipy."""

import numpy as np
import pytest
import scipy.signal

from img2imu_jax.imu.recordings import UNLABELLED, IMUDataset, Recording
from img2imu_jax.imu.sensor_corpus import load_sensor_corpus, normalise, sensor_corpus


def recording(length, rate, seed, labels=None):
    samples = np.random.default_rng(seed).normal(size=(length, 3)) * [1, 2, 3] + [0, 9.8, -1]
    labels = np.zeros(length, np.int64) if labels is None else np.asarray(labels, np.int64)
    return Recording(samples.astype(np.float32), labels, f"s{seed}", rate)


def reference_windows(signal, length, hop):
    return [signal[start:start + length] for start in range(0, len(signal) - length + 1, hop)]


def test_corpus_windows_and_statistics_match_numpy():
    # 50 Hz, 0.2 s windows: 10 samples, hop 5. Labels (mixed, unlabelled) play no part.
    mixed = recording(23, 50.0, 0, labels=[0] * 5 + [UNLABELLED] * 8 + [1] * 10)
    too_short = recording(7, 50.0, 1)
    at_100_hz = recording(60, 100.0, 2)
    first = IMUDataset("a", ("walk", "sit"), (mixed, too_short))
    second = IMUDataset("b", ("x",), (at_100_hz,))
    corpus = sensor_corpus([first, second], seconds=0.2)

    halved = scipy.signal.resample_poly(at_100_hz.samples.astype(np.float64), 1, 2, axis=0)
    expected = np.stack(reference_windows(mixed.samples, 10, 5)
                        + reference_windows(halved, 10, 5))
    assert corpus.windows.shape == (3 + 5, 10, 3) and corpus.windows.dtype == np.float32
    np.testing.assert_allclose(corpus.windows, expected, rtol=1e-5, atol=1e-6)
    flat = expected.reshape(-1, 3)
    np.testing.assert_allclose(corpus.mean, flat.mean(axis=0), rtol=1e-5)
    np.testing.assert_allclose(corpus.std, np.sqrt(((flat - flat.mean(0)) ** 2).mean(0)),
                               rtol=1e-5)
    assert corpus.mean.dtype == corpus.std.dtype == np.float32
    assert (corpus.sources, corpus.sample_rate, corpus.seconds, len(corpus)) == (
        ("a", "b"), 50.0, 0.2, 8)
    normalised = corpus.normalised()
    np.testing.assert_allclose(normalised.reshape(-1, 3).mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(normalised.reshape(-1, 3).std(0), 1, rtol=1e-4)


def test_overlap_and_window_length_follow_the_arguments():
    data = IMUDataset("a", ("x",), (recording(500, 50.0, 0),))
    assert sensor_corpus([data], seconds=2.0).windows.shape == (9, 100, 3)  # hop 50
    assert sensor_corpus([data], seconds=5.0).windows.shape == (3, 250, 3)  # hop 125
    assert sensor_corpus([data], seconds=2.0, overlap=0.0).windows.shape == (5, 100, 3)


def test_normalise_matches_the_formula_and_checks_shapes():
    windows = np.random.default_rng(0).normal(size=(4, 6, 3))
    mean, std = np.array([1.0, -2.0, 0.5]), np.array([2.0, 0.5, 4.0])
    np.testing.assert_allclose(normalise(windows, mean, std),
                               (windows - mean[None, None]) / std[None, None], rtol=1e-6)
    with pytest.raises(ValueError, match="per-axis"):
        normalise(windows, mean[:2], std)


def test_bad_corpora_are_clear_errors():
    with pytest.raises(ValueError, match="at least one dataset"):
        sensor_corpus([], seconds=2.0)
    flat = recording(200, 50.0, 0)
    flat.samples[:, 1] = 1.0
    with pytest.raises(ValueError, match="axis y is constant"):
        sensor_corpus([IMUDataset("a", ("x",), (flat,))], seconds=2.0)
    short = IMUDataset("short", ("x",), (recording(30, 50.0, 0),))
    with pytest.raises(ValueError, match="short: no 2.0 s window"):
        sensor_corpus([short], seconds=2.0)


def test_load_sensor_corpus_reads_registry_datasets():
    corpus = load_sensor_corpus([("basicmotions", None)], seconds=2.0)
    # BasicMotions: 80 cases of 100 samples at 10 Hz -> 500 samples at 50 Hz -> 9 windows each.
    assert corpus.windows.shape == (80 * 9, 100, 3)
    assert corpus.sources == ("basicmotions",)
