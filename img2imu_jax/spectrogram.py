"""IMU windows → the RGB spectrogram images that IMG2IMU feeds to an image network.

The pipeline is the paper authors' own renderer (tests/test_spectrogram.py checks ours against
their rendering of their sample window): per accelerometer axis a Hann STFT with no
detrending, one-sided power spectral density, 10·log10, min–max to [0, 1]; x, y, z become R, G, B; low frequencies sit on the bottom row and time runs along the width; the
result is resized to 96 × 128 (height × width) with linear interpolation.

Everything here is pure JAX and jittable with the settings static, so the frontend runs on
whichever device holds the windows, inside the same jitted function as the encoder.
"""

from __future__ import annotations

import functools
from fractions import Fraction

import jax
import jax.numpy as jnp
import numpy as np
import scipy.signal

DEFAULT_IMAGE_SIZE = (96, 128)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# A float32 FFT cannot resolve power more than about 120 dB below an axis's peak (its rounding
# error sits there), so log-power is clamped at that floor. This keeps exact zeros (digital
# silence) finite without changing anything float32 measures.
FLOOR_BELOW_PEAK_DB = 120.0


@functools.partial(jax.jit, static_argnames=("sample_rate", "nfft", "noverlap"))
def log_power_spectrogram(
    windows: jax.Array, *, sample_rate: float, nfft: int, noverlap: int
) -> jax.Array:
    """Per-axis log power spectral density in dB, shaped `[..., frequency, frame, axis]`.

    For each axis this equals `10·log10(scipy.signal.spectrogram(x, sample_rate, window='hann',
    nperseg=nfft, noverlap=noverlap, detrend=False))`, lowest frequency first. Windows shorter
    than `nfft` are zero-padded at the end, as matplotlib's `specgram` does. Exact zero power
    gives -inf.
    """
    db = _frame_axis_freq_db(windows, sample_rate, nfft, noverlap)
    n_frames, n_axes, n_freqs = db.shape[1:]
    return jnp.transpose(db, (0, 3, 1, 2)).reshape(*windows.shape[:-2], n_freqs, n_frames, n_axes)


@functools.partial(
    jax.jit, static_argnames=("sample_rate", "nfft", "noverlap", "image_size")
)
def spectrogram_image(
    windows: jax.Array,
    *,
    sample_rate: float,
    nfft: int,
    noverlap: int,
    image_size: tuple[int, int] = DEFAULT_IMAGE_SIZE,
) -> jax.Array:
    """Accelerometer windows `[..., time, 3]` → float32 RGB images `[..., height, width, 3]` in [0, 1].

    Each axis is min–max scaled on its own, so a channel's brightness is relative to its axis.
    A flat axis (zero variance over the window) carries no motion and renders as an all-zero
    channel; so does any axis whose log-power is the same everywhere.

    Samples must be finite. The data are not checked here (this runs jitted, on device): one NaN
    or infinity makes that axis's whole channel NaN. Host-side entry points (CSV readers,
    datasets, `img2imu`) reject non-finite input first with `imu.validation.validate_windows`;
    call it yourself for other sources.
    """
    if windows.ndim < 2 or windows.shape[-1] != 3:
        raise ValueError(
            f"windows must be [..., time, 3] (accelerometer x, y, z); got shape {windows.shape}"
        )
    height, width = image_size
    if height < 1 or width < 1:
        raise ValueError(f"image_size must be (height, width) > 0; got {image_size}")
    db = _frame_axis_freq_db(windows, sample_rate, nfft, noverlap)
    peak = db.max(axis=(1, 3), keepdims=True)
    db = jnp.maximum(db, peak - FLOOR_BELOW_PEAK_DB)
    low = db.min(axis=(1, 3), keepdims=True)
    span = peak - low
    samples = windows.reshape(-1, *windows.shape[-2:])
    flat = (samples.max(axis=1) == samples.min(axis=1))[:, None, :, None]
    blank = flat | (span <= 0)
    scaled = jnp.where(blank, 0.0, (db - low) / jnp.where(blank, 1.0, span))
    # Normalising before this transpose keeps the reductions on the conv's own layout (1.5× faster
    # on CPU); reversing the rows puts the lowest frequency on the bottom row.
    scaled = jnp.transpose(scaled, (0, 3, 1, 2))
    rows = _resize_axis(scaled, 1, height, reverse=True)
    images = _resize_axis(rows, 2, width)
    return images.reshape(*windows.shape[:-2], height, width, 3)


def normalize_imagenet(images: jax.Array) -> jax.Array:
    """[0, 1] RGB images → the ImageNet mean/std normalisation image networks are trained with."""
    mean = jnp.asarray(IMAGENET_MEAN, jnp.float32)
    std = jnp.asarray(IMAGENET_STD, jnp.float32)
    return (jnp.asarray(images, jnp.float32) - mean) / std


def resample(windows: jax.Array, from_hz: float, to_hz: float) -> jax.Array:
    """Resample `[..., time, channels]` from `from_hz` to `to_hz` as `scipy.signal.resample_poly`.

    Polyphase resampling with scipy's default Kaiser (β = 5) anti-aliasing filter and zero
    padding at the edges; the output has `ceil(time · to_hz / from_hz)` samples.
    """
    if not (from_hz > 0 and to_hz > 0):
        raise ValueError(f"sample rates must be positive; got from_hz={from_hz}, to_hz={to_hz}")
    ratio = Fraction(to_hz).limit_denominator(1000) / Fraction(from_hz).limit_denominator(1000)
    return _resample_poly(jnp.asarray(windows, jnp.float32), ratio.numerator, ratio.denominator)


@functools.partial(jax.jit, static_argnames=("up", "down"))
def _resample_poly(windows: jax.Array, up: int, down: int) -> jax.Array:
    if up == down:
        return windows
    batch_shape, (n_in, n_channels) = windows.shape[:-2], windows.shape[-2:]
    n_out = -(-n_in * up // down)
    half_len = 10 * max(up, down)
    taps = scipy.signal.firwin(2 * half_len + 1, 1.0 / max(up, down), window=("kaiser", 5.0))
    kernel = np.tile((taps * up).astype(np.float32)[:, None, None], (1, 1, n_channels))
    # Output sample j sits at position j·down of the zero-stuffed (×up) signal, under the centre
    # of the symmetric filter: one strided, input-dilated convolution is the polyphase filter.
    stuffed_len = (n_in - 1) * up + 1
    pad_right = max(0, (n_out - 1) * down + len(taps) - half_len - stuffed_len)
    out = jax.lax.conv_general_dilated(
        windows.reshape(-1, n_in, n_channels), jnp.asarray(kernel),
        window_strides=(down,), padding=[(half_len, pad_right)], lhs_dilation=(up,),
        dimension_numbers=("NWC", "WIO", "NWC"), feature_group_count=n_channels,
        precision=jax.lax.Precision.HIGHEST,
    )
    return out[:, :n_out].reshape(*batch_shape, n_out, n_channels)


def _frame_axis_freq_db(
    windows: jax.Array, sample_rate: float, nfft: int, noverlap: int
) -> jax.Array:
    """Log-PSD in dB laid out `[batch, frame, axis, frequency]`, as the convolution yields it."""
    check_settings(sample_rate, nfft, noverlap)
    _check_shape(windows.shape)
    n_axes = windows.shape[-1]
    signals = jnp.asarray(windows, jnp.float32).reshape(-1, *windows.shape[-2:])
    if signals.shape[1] < nfft:
        signals = jnp.pad(signals, ((0, 0), (0, nfft - signals.shape[1]), (0, 0)))
    # Framing, Hann window and DFT as one strided convolution per axis. Alone it is on par with
    # jax.scipy.signal.stft, but its [batch, frame, axis, frequency] result fuses with the power,
    # log and per-axis normalisation ahead of a single transpose: the whole image pipeline runs
    # ~1.4× faster on CPU (benchmarks/RESULTS.md). HIGHEST keeps TF32/bf16 passes out of it.
    kernel = jnp.asarray(np.tile(_windowed_dft_kernel(nfft), (1, n_axes)))[:, None, :]
    coefficients = jax.lax.conv_general_dilated(
        signals, kernel, window_strides=(nfft - noverlap,), padding="VALID",
        dimension_numbers=("NWC", "WIO", "NWC"), feature_group_count=n_axes,
        precision=jax.lax.Precision.HIGHEST,
    )
    coefficients = coefficients.reshape(*coefficients.shape[:2], n_axes, 2, nfft // 2 + 1)
    power = coefficients[..., 0, :] ** 2 + coefficients[..., 1, :] ** 2
    return 10.0 * jnp.log10(power * _density_scale(nfft, sample_rate))


def check_settings(sample_rate: float, nfft: int, noverlap: int) -> None:
    """A ValueError unless the STFT settings are usable: rate > 0 Hz, nfft ≥ 2, 0 ≤ noverlap <
    nfft (a rate ≤ 0 would otherwise give a NaN density scale and a black image)."""
    if not sample_rate > 0:
        raise ValueError(f"sample rate must be > 0 Hz; got {sample_rate}")
    if nfft < 2:
        raise ValueError(f"nfft must be at least 2; got {nfft}")
    if not 0 <= noverlap < nfft:
        raise ValueError(f"noverlap must be in [0, nfft); got noverlap={noverlap}, nfft={nfft}")


def _check_shape(shape: tuple[int, ...]) -> None:
    if len(shape) < 2:
        raise ValueError(f"windows must be [..., time, axes]; got shape {shape}")
    if shape[-2] < 1:
        raise ValueError(f"windows have no samples (shape {shape})")


@functools.lru_cache(maxsize=None)
def _windowed_dft_kernel(nfft: int) -> np.ndarray:
    """[nfft, 2·(nfft//2+1)] real and imaginary parts of the Hann-windowed one-sided DFT."""
    window = scipy.signal.get_window("hann", nfft)
    phase = 2 * np.pi * np.outer(np.arange(nfft), np.arange(nfft // 2 + 1)) / nfft
    return (np.concatenate([np.cos(phase), -np.sin(phase)], axis=1) * window[:, None]).astype(
        np.float32
    )


def _density_scale(nfft: int, sample_rate: float) -> np.ndarray:
    """scipy's one-sided 'density' scaling: 1/(fs·Σw²), doubled except at DC and Nyquist."""
    window = scipy.signal.get_window("hann", nfft)
    scale = np.full(nfft // 2 + 1, 2.0 / (sample_rate * np.sum(window**2)))
    scale[0] /= 2
    if nfft % 2 == 0:
        scale[-1] /= 2
    return scale.astype(np.float32)


def _resize_axis(x: jax.Array, axis: int, size: int, reverse: bool = False) -> jax.Array:
    """Linear resize of one axis, `jax.image.resize(..., "linear")` exactly, as sparse taps.

    `jax.image.resize` contracts a dense [out, in] weight matrix; linear weights have two
    non-zeros per row when upsampling, so gathering those rows is about three times faster.
    """
    indices, weights = _linear_taps(x.shape[axis], size)
    if reverse:
        indices, weights = indices[::-1], weights[::-1]
    trailing = (1,) * (x.ndim - axis - 1)
    return sum(
        jnp.take(x, indices[:, k], axis=axis) * weights[:, k].reshape(-1, *trailing)
        for k in range(indices.shape[1])
    )


@functools.lru_cache(maxsize=None)
def _linear_taps(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray]:
    """Per output pixel, the input pixels and weights of jax.image's antialiased linear kernel.

    Half-pixel centres; when shrinking, the triangle widens by the shrink factor; each output's
    weights sum to one. Built in numpy because tracing jax.image.resize to get them costs ~1 s.
    """
    stretch = n_in / n_out
    centres = (np.arange(n_out) + 0.5) * stretch - 0.5
    distance = np.abs(centres[:, None] - np.arange(n_in)[None, :]) / max(stretch, 1.0)
    dense = np.maximum(0.0, 1.0 - distance)
    dense /= dense.sum(axis=1, keepdims=True)
    n_taps = int((dense > 0).sum(axis=1).max())
    indices = np.argsort(dense <= 0, axis=1, kind="stable")[:, :n_taps]
    weights = np.take_along_axis(dense, indices, axis=1).astype(np.float32)
    return indices, weights
