"""The spectrogram frontend against scipy, matplotlib, jax.image and the authors' own rendering."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.signal
from matplotlib import mlab

from img2imu_jax.imu.xyz_csv import read_xyz_csv
from img2imu_jax.render import read_png
from img2imu_jax.spectrogram import (
    log_power_spectrogram,
    normalize_imagenet,
    resample,
    spectrogram_image,
)


def motion(shape, sample_rate=50.0, seed=0):
    """Noise plus a few sinusoids per axis: broadband, like real accelerometer windows."""
    rng = np.random.default_rng(seed)
    t = np.arange(shape[-2]) / sample_rate
    tones = sum(
        rng.uniform(0.5, 2.0, shape[:-2] + (1, 3))
        * np.sin(2 * np.pi * f * t[:, None] + rng.uniform(0, 6, 3))
        for f in (1.3, 4.1, 9.7)
    )
    return (tones + rng.normal(0, 0.5, shape)).astype(np.float32)


def scipy_log_psd(x, sample_rate, nfft, noverlap):
    """Reference `[..., frequency, frame, axis]` dB from scipy, laid out like ours."""
    _, _, power = scipy.signal.spectrogram(
        np.moveaxis(x.astype(np.float64), -1, -2), sample_rate, window="hann",
        nperseg=nfft, noverlap=noverlap, detrend=False,
    )
    return np.moveaxis(10 * np.log10(power), -3, -1)


@pytest.mark.parametrize(
    "sample_rate, nfft, noverlap, length",
    [(50.0, 128, 120, 500), (20.0, 128, 116, 600), (50.0, 64, 48, 250), (100.0, 33, 31, 200)],
)
def test_log_psd_equals_scipy_spectrogram(sample_rate, nfft, noverlap, length):
    x = motion((2, length, 3), sample_rate)
    ours = log_power_spectrogram(x, sample_rate=sample_rate, nfft=nfft, noverlap=noverlap)
    np.testing.assert_allclose(ours, scipy_log_psd(x, sample_rate, nfft, noverlap), atol=2e-3)


def test_log_psd_equals_scipy_on_the_authors_window(reference_dir):
    x = read_xyz_csv(reference_dir / "jogging.csv").samples
    ours = log_power_spectrogram(x, sample_rate=20.0, nfft=128, noverlap=116)
    assert ours.shape == (65, 40, 3)  # the 65 × 40 cell grid of the authors' image
    np.testing.assert_allclose(ours, scipy_log_psd(x, 20.0, 128, 116), atol=2e-3)


@pytest.mark.filterwarnings("ignore:Only one segment is calculated")
def test_short_windows_are_zero_padded_like_matplotlib():
    x = motion((90, 3), 50.0)
    ours = log_power_spectrogram(x, sample_rate=50.0, nfft=128, noverlap=120)
    window = scipy.signal.get_window("hann", 128)
    for axis in range(3):
        power, _, _ = mlab.specgram(  # warns that one segment is all it computes
            x[:, axis].astype(np.float64), NFFT=128, Fs=50.0, noverlap=120, window=window,
            detrend=mlab.detrend_none, scale_by_freq=True, mode="psd",
        )
        np.testing.assert_allclose(ours[..., axis], 10 * np.log10(power), atol=2e-3)


@pytest.mark.parametrize(
    "nfft, noverlap, length, size",
    [(128, 120, 500, (96, 128)), (256, 252, 1000, (96, 128)), (32, 28, 300, (40, 60))],
)
def test_image_is_the_normalised_log_psd_resized_like_jax_image(nfft, noverlap, length, size):
    """Per-axis min–max of scipy's log-PSD, low frequencies down, then jax.image's linear resize.

    The second case has more frequency rows and frames than pixels, so it covers downsampling.
    """
    x = motion((2, length, 3))
    db = scipy_log_psd(x, 50.0, nfft, noverlap)
    low = db.min(axis=(-3, -2), keepdims=True)
    high = db.max(axis=(-3, -2), keepdims=True)
    expected = jax.image.resize(
        ((db - low) / (high - low))[:, ::-1].astype(np.float32), (2, *size, 3), "linear"
    )
    ours = spectrogram_image(x, sample_rate=50.0, nfft=nfft, noverlap=noverlap, image_size=size)
    assert ours.shape == (2, *size, 3) and ours.dtype == jnp.float32
    np.testing.assert_allclose(ours, expected, atol=1e-4)


def test_matches_the_authors_rendering_of_their_window(reference_dir):
    window = read_xyz_csv(reference_dir / "jogging.csv").samples
    ours = np.asarray(spectrogram_image(window, sample_rate=20.0, nfft=128, noverlap=116))
    theirs = read_png(reference_dir / "jogging_combined.png", size=(96, 128))
    for channel in range(3):
        r = np.corrcoef(ours[..., channel].ravel(), theirs[..., channel].ravel())[0, 1]
        assert r >= 0.99, f"channel {'RGB'[channel]}: Pearson r = {r:.4f}"


def test_axes_map_to_rgb_with_low_frequencies_at_the_bottom_and_time_across():
    sample_rate, length = 50.0, 500
    t = np.arange(length) / sample_rate
    tones = {0: 2.0, 1: 20.0, 2: 10.0}  # x low, y high, z middle
    x = np.stack([np.sin(2 * np.pi * f * t) for f in tones.values()], axis=-1)
    x += np.random.default_rng(1).normal(0, 1e-3, x.shape)
    image = np.asarray(spectrogram_image(x, sample_rate=sample_rate, nfft=128, noverlap=120))
    for channel, frequency in tones.items():
        expected_row = (1 - frequency / (sample_rate / 2)) * (image.shape[0] - 1)
        brightest_row = image[..., channel].mean(axis=1).argmax()
        assert abs(brightest_row - expected_row) <= 3, (channel, brightest_row, expected_row)

    quiet_then_loud = np.random.default_rng(2).normal(0, 1, (length, 3))
    quiet_then_loud[: length // 2] *= 1e-3
    image = np.asarray(spectrogram_image(quiet_then_loud, sample_rate=50.0, nfft=64, noverlap=56))
    left, right = image[:, :40].mean(axis=(0, 1)), image[:, -40:].mean(axis=(0, 1))
    assert np.all(right > left + 0.3)


def test_each_axis_spans_zero_to_one_on_its_own():
    settings = dict(sample_rate=50.0, nfft=128, noverlap=120, image_size=(65, 47))  # the grid
    x = motion((3, 500, 3))
    x[..., 1] *= 1000.0  # one loud axis must not dim the others
    image = np.asarray(spectrogram_image(x, **settings))
    np.testing.assert_allclose(image.min(axis=(1, 2)), 0.0, atol=1e-6)
    np.testing.assert_allclose(image.max(axis=(1, 2)), 1.0, atol=1e-6)
    quiet = np.asarray(spectrogram_image(x[..., [0, 0, 2]], **settings))
    np.testing.assert_allclose(image[..., 0], quiet[..., 0], atol=1e-5)


def test_a_flat_axis_gives_a_defined_zero_channel():
    x = motion((500, 3))
    gravity = x.copy()
    gravity[:, 2] = 9.81
    image = np.asarray(spectrogram_image(gravity, sample_rate=50.0, nfft=128, noverlap=120))
    reference = np.asarray(spectrogram_image(x, sample_rate=50.0, nfft=128, noverlap=120))
    assert np.all(np.isfinite(image))
    assert np.all(image[..., 2] == 0.0)
    np.testing.assert_array_equal(image[..., :2], reference[..., :2])

    silent = np.asarray(spectrogram_image(np.zeros((500, 3)), sample_rate=50.0, nfft=128, noverlap=120))
    assert np.all(silent == 0.0)


def test_digital_silence_inside_a_window_stays_finite():
    x = motion((500, 3))
    x[:300] = 0.0  # whole frames of exact zeros: their power is 0, their log -inf
    image = np.asarray(spectrogram_image(x, sample_rate=50.0, nfft=64, noverlap=32))
    assert np.all(np.isfinite(image)) and image.min() >= 0.0 and image.max() <= 1.0
    assert image[:, :10].max() == 0.0  # silent frames sit at the floor
    assert image[:, -10:].mean() > 0.5


def test_batch_shapes_vmap_and_jit_agree():
    settings = dict(sample_rate=50.0, nfft=64, noverlap=56)
    x = motion((2, 3, 200, 3))
    batched = np.asarray(spectrogram_image(x, **settings))
    one_by_one = np.stack(
        [np.asarray(spectrogram_image(w, **settings)) for w in x.reshape(6, 200, 3)]
    ).reshape(batched.shape)
    mapped = jax.vmap(jax.vmap(lambda w: spectrogram_image(w, **settings)))(x)
    jitted = jax.jit(lambda w: spectrogram_image(w, **settings))(x)
    assert batched.shape == (2, 3, 96, 128, 3)
    np.testing.assert_allclose(one_by_one, batched, atol=1e-6)
    np.testing.assert_allclose(mapped, batched, atol=1e-6)
    np.testing.assert_allclose(jitted, batched, atol=1e-6)


def test_runs_on_the_device_that_holds_the_data():
    devices = jax.devices()
    assert len(devices) == 8, "conftest asks for 8 fake CPU devices"
    x = jax.device_put(motion((2, 200, 3)), devices[5])
    image = spectrogram_image(x, sample_rate=50.0, nfft=64, noverlap=56)
    assert image.devices() == {devices[5]}


@pytest.mark.parametrize("bad", [dict(nfft=1, noverlap=0), dict(nfft=64, noverlap=64),
                                 dict(nfft=64, noverlap=-1)])
def test_bad_settings_are_value_errors(bad):
    with pytest.raises(ValueError, match="nfft|noverlap"):
        spectrogram_image(motion((200, 3)), sample_rate=50.0, **bad)


def test_wrong_axis_count_is_a_value_error():
    with pytest.raises(ValueError, match=r"\[\.\.\., time, 3\]"):
        spectrogram_image(motion((200, 3))[:, :2], sample_rate=50.0, nfft=64, noverlap=32)


def test_normalize_imagenet_uses_the_imagenet_statistics():
    images = np.random.default_rng(0).uniform(size=(2, 4, 5, 3)).astype(np.float32)
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    np.testing.assert_allclose(normalize_imagenet(images), (images - mean) / std, atol=1e-6)


@pytest.mark.parametrize(
    "from_hz, to_hz, up, down",
    [(20, 50, 5, 2), (64, 50, 25, 32), (100, 50, 1, 2), (10, 50, 5, 1), (32.0, 50.0, 25, 16)],
)
@pytest.mark.parametrize("length", [200, 333])
def test_resample_equals_scipy_resample_poly(from_hz, to_hz, up, down, length):
    x = motion((2, length, 3), float(from_hz))
    expected = scipy.signal.resample_poly(x.astype(np.float64), up, down, axis=-2)
    ours = resample(x, from_hz, to_hz)
    assert ours.shape == expected.shape
    np.testing.assert_allclose(ours, expected, atol=1e-5 * np.abs(expected).max())


def test_resample_at_the_same_rate_is_the_identity():
    x = motion((50, 3))
    np.testing.assert_array_equal(resample(x, 50, 50), x)
    with pytest.raises(ValueError, match="positive"):
        resample(x, 0, 50)
