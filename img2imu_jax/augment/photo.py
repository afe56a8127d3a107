"""Photo augmentations: the mild `crop` and the paper's two baselines, `mocov2` and `all`.

The package docstring gives their semantics (torchvision's and PIL's formulas) and defaults;
colour adjustments are in `colour`. Pixel movements (crop, shear) go through `backend`, which
picks each backend's form; the blur and the flip are `chain.SeparableOp`s, which the chain
composes on TPU.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from img2imu_jax.augment import backend, colour, sensor
from img2imu_jax.augment.chain import (
    ExampleOp, SeparableOp, Step, between, chain, pick, symmetric)
from img2imu_jax.augment.spec import PROBABILITY, Param

# torchvision's RandomResizedCrop tries this many boxes before falling back to a central crop.
_CROP_TRIES = 10


# MoCo v2 and crop ---------------------------------------------------------------------------------------


def mocov2(
    *,
    crop_scale_min: float,
    crop_scale_max: float,
    crop_ratio_min: float,
    crop_ratio_max: float,
    color_jitter_p: float,
    brightness: float,
    contrast: float,
    saturation: float,
    hue: float,
    grayscale_p: float,
    blur_p: float,
    blur_sigma_min: float,
    blur_sigma_max: float,
    blur_kernel_fraction: float,
    flip_p: float,
) -> Step:
    """MoCo v2's `augmentation` list in its order, with torchvision's semantics."""

    crop = _crop_op((crop_scale_min, crop_scale_max), (crop_ratio_min, crop_ratio_max))

    return chain([
        (crop, 1.0),
        (colour.color_jitter(brightness, contrast, saturation, hue), color_jitter_p),
        (lambda key, image: colour.grayscale(image), grayscale_p),
        (_blur_op(blur_kernel_fraction, blur_sigma_min, blur_sigma_max), blur_p),
        (FLIP, flip_p),
    ]), 1.0


def _blur_op(kernel_fraction: float, sigma_min: float, sigma_max: float) -> SeparableOp:
    """torchvision's GaussianBlur: an odd kernel of about `kernel_fraction` of the shorter side."""

    def radius(height: int, width: int) -> int:
        return max(1, int(kernel_fraction * min(height, width)) // 2)

    def sigma(key: jax.Array) -> jax.Array:
        return jax.random.uniform(key, (), minval=sigma_min, maxval=sigma_max)

    def blur(key: jax.Array, image: jax.Array) -> jax.Array:
        return _gaussian_blur(image, sigma(key), radius(*image.shape[:2]))

    def matrices(key: jax.Array, height: int, width: int) -> tuple[jax.Array, jax.Array]:
        weights = _gaussian_weights(sigma(key), radius(height, width))
        return _reflected_band(weights, height), _reflected_band(weights, width)

    return SeparableOp(blur, matrices)


FLIP = SeparableOp(
    lambda key, image: image[:, ::-1],
    lambda key, height, width: (None, np.eye(width, dtype=np.float32)[::-1]),
)
"""torchvision's RandomHorizontalFlip (its coin is the chain's)."""


def crop(scale_min: float, scale_max: float, ratio_min: float, ratio_max: float,
          p: float) -> Step:
    return _crop_op((scale_min, scale_max), (ratio_min, ratio_max)), p


def _crop_op(scale: tuple[float, float], ratio: tuple[float, float]) -> ExampleOp:
    """torchvision's RandomResizedCrop, back to the image's own size."""

    def crop(key: jax.Array, image: jax.Array) -> jax.Array:
        return backend.resize_box(image, *_random_crop_box(key, *image.shape[:2], scale, ratio))

    return crop


def _random_crop_box(
    key: jax.Array,
    height: int,
    width: int,
    scale: tuple[float, float],
    ratio: tuple[float, float],
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """torchvision's RandomResizedCrop box `(top, left, h, w)`: tries vectorised, first fit wins
    (picked by `backend.lookup`, so no gather on TPU)."""
    u = jax.random.uniform(key, (2 * _CROP_TRIES + 2,))
    area = height * width * between(u[:_CROP_TRIES], *scale)
    aspect = jnp.exp(between(u[_CROP_TRIES:-2], math.log(ratio[0]), math.log(ratio[1])))
    w = jnp.round(jnp.sqrt(area * aspect)).astype(jnp.int32)
    h = jnp.round(jnp.sqrt(area / aspect)).astype(jnp.int32)
    fits = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = jnp.argmax(fits)
    fallback_h, fallback_w = _central_crop_size(height, width, ratio)
    found = fits.any()
    h = jnp.where(found, backend.lookup(h, first), fallback_h)
    w = jnp.where(found, backend.lookup(w, first), fallback_w)
    top = jnp.where(found, pick(u[-2], height - h + 1), (height - h) // 2)
    left = jnp.where(found, pick(u[-1], width - w + 1), (width - w) // 2)
    return top, left, h, w


def _central_crop_size(height: int, width: int, ratio: tuple[float, float]) -> tuple[int, int]:
    """torchvision's fallback: the whole image, trimmed to the nearest allowed aspect ratio."""
    if width / height < ratio[0]:
        return min(height, round(width / ratio[0])), width
    if width / height > ratio[1]:
        return height, min(width, round(height * ratio[1]))
    return height, width


def _gaussian_weights(sigma: jax.Array, radius: int) -> jax.Array:
    taps = jnp.arange(-radius, radius + 1, dtype=jnp.float32)
    weights = jnp.exp(-0.5 * (taps / sigma) ** 2)
    return weights / weights.sum()


def _gaussian_blur(image: jax.Array, sigma: jax.Array, radius: int) -> jax.Array:
    """Separable Gaussian with `2·radius + 1` taps and reflected edges, as torchvision's."""
    weights = _gaussian_weights(sigma, radius)
    for axis in (0, 1):
        size = image.shape[axis]
        padded = jnp.pad(
            image, [(radius, radius) if a == axis else (0, 0) for a in range(3)], mode="reflect"
        )
        image = sum(
            weights[k] * jax.lax.slice_in_dim(padded, k, k + size, axis=axis)
            for k in range(2 * radius + 1)
        )
    return image


def _reflected_band(weights: jax.Array, size: int) -> jax.Array:
    """The blur along one axis of `size` samples as a matrix: output i = Σ_k weights[k] ·
    input[i + k - radius], indices past an edge reflected (…, 2, 1, 0, 1, 2, …) as in the blur."""
    radius = len(weights) // 2
    source = np.abs(np.arange(size)[:, None] + np.arange(-radius, radius + 1))
    source = np.where(source >= size, 2 * (size - 1) - source, source)
    return sum(weights[k] * (source[:, k, None] == np.arange(size)) for k in range(len(weights)))


# MoCo + All augmentations -----------------------------------------------------------------------


def all_ops(
    *,
    p: float,
    rotate_max_degrees: float,
    shear_max: float,
    sharpness_max_delta: float,
    contrast_max_delta: float,
    brightness_max_delta: float,
    color_max_delta: float,
    solarize_min_threshold: float,
    posterize_min_bits: int,
    **sensor_params: float,
) -> Step:
    """Each op with probability `p`, in the paper's listed order; magnitudes uniform up to a max."""

    def enhance(fn: Callable[[jax.Array, jax.Array], jax.Array], delta: float) -> ExampleOp:
        return lambda key, image: fn(image, 1 + symmetric(key, delta))

    def rotate(key: jax.Array, image: jax.Array) -> jax.Array:
        angle = jnp.deg2rad(symmetric(key, rotate_max_degrees))
        cos, sin = jnp.cos(angle), jnp.sin(angle)
        return backend.warp(image, jnp.array([[cos, sin], [-sin, cos]]))

    def shear(key: jax.Array, image: jax.Array) -> jax.Array:
        u = jax.random.uniform(key, (2,))
        along_x = (u[1] < 0.5).astype(jnp.float32)
        # Arithmetic, not a select: vmap on an Explicit mesh cannot mix a batched predicate with
        # unbatched constant matrices.
        direction = along_x * np.array([[0.0, 0.0], [1.0, 0.0]]) + (1 - along_x) * np.array(
            [[0.0, 1.0], [0.0, 0.0]]
        )
        matrix = np.eye(2) + between(u[0], -shear_max, shear_max) * direction
        return backend.shear(image, matrix, along_x > 0.5)

    def solarize(key: jax.Array, image: jax.Array) -> jax.Array:
        return _solarize(image, jax.random.uniform(key, (), minval=solarize_min_threshold))

    def posterize(key: jax.Array, image: jax.Array) -> jax.Array:
        bits = posterize_min_bits + pick(jax.random.uniform(key), 9 - posterize_min_bits)
        return _posterize(image, bits)

    image_ops = [
        rotate,
        shear,
        enhance(_sharpness, sharpness_max_delta),
        enhance(colour.contrast, contrast_max_delta),
        enhance(colour.brightness, brightness_max_delta),
        enhance(colour.saturation, color_max_delta),
        lambda key, image: 1.0 - image,
        solarize,
        posterize,
        lambda key, image: _equalize(image),
        lambda key, image: _autocontrast(image),
    ]
    sensor_ops = [
        build(p=p, **{name: sensor_params[f"{op}_{name}"] for name in sensor.PARAMS[op] if name != "p"})
        for op, build in sensor.BUILDERS.items()
    ]
    return chain([(op, p) for op in image_ops] + sensor_ops), 1.0


def _sharpness(image: jax.Array, factor: jax.Array) -> jax.Array:
    """PIL's Sharpness: blend with its SMOOTH filter (3×3, centre 5, rest 1, /13), border kept."""
    height, width = image.shape[:2]
    padded = jnp.pad(image, ((1, 1), (1, 1), (0, 0)), mode="edge")
    box = sum(padded[dy : dy + height, dx : dx + width] for dy in range(3) for dx in range(3))
    smooth = (box + 4 * image) / 13
    rows, cols = jnp.arange(height)[:, None, None], jnp.arange(width)[None, :, None]
    interior = (rows > 0) & (rows < height - 1) & (cols > 0) & (cols < width - 1)
    return colour.blend(image, jnp.where(interior, smooth, image), factor)


def _levels(image: jax.Array) -> jax.Array:
    """8-bit values of a [0, 1] image, what PIL's point operations act on."""
    return jnp.round(image * 255).astype(jnp.int32)


def _solarize(image: jax.Array, threshold: jax.Array) -> jax.Array:
    return jnp.where(image >= threshold, 1.0 - image, image)


def _posterize(image: jax.Array, bits: jax.Array) -> jax.Array:
    drop = 8 - bits
    return ((_levels(image) >> drop) << drop).astype(jnp.float32) / 255


def _autocontrast(image: jax.Array) -> jax.Array:
    """Per-channel min–max stretch to [0, 1]; a constant channel is left alone."""
    low = image.min(axis=(0, 1))
    span = image.max(axis=(0, 1)) - low
    return jnp.where(span > 0, (image - low) / jnp.where(span > 0, span, 1), image)


def _equalize(image: jax.Array) -> jax.Array:
    """PIL's ImageOps.equalize per channel on the 8-bit values (256 bins, histogram by scatter)."""
    return jax.vmap(_equalize_channel, in_axes=2, out_axes=2)(_levels(image)) / 255


def _equalize_channel(levels: jax.Array) -> jax.Array:
    flat = levels.reshape(-1)
    counts = jnp.zeros(256, jnp.int32).at[flat].add(1)
    step = (flat.size - counts[flat.max()]) // 255
    before = jnp.cumsum(counts) - counts
    lut = jnp.minimum((before + step // 2) // jnp.maximum(step, 1), 255)
    return jnp.where(step > 0, lut[levels], levels).astype(jnp.float32)


# Parameters -----------------------------------------------------------------------------------

CROP_PARAMS = {
    "scale_min": Param(0.5, 0.0, 1.0, open_low=True),
    "scale_max": Param(1.0, 0.0, 1.0, open_low=True),
    "ratio_min": Param(3 / 4, 0.0, open_low=True),
    "ratio_max": Param(4 / 3, 0.0, open_low=True),
    "p": PROBABILITY,
}
MOCOV2_PARAMS = {
    "crop_scale_min": Param(0.2, 0.0, 1.0, open_low=True),
    "crop_scale_max": Param(1.0, 0.0, 1.0, open_low=True),
    "crop_ratio_min": Param(3 / 4, 0.0, open_low=True),
    "crop_ratio_max": Param(4 / 3, 0.0, open_low=True),
    "color_jitter_p": Param(0.8, 0.0, 1.0),
    "brightness": Param(0.4, 0.0),
    "contrast": Param(0.4, 0.0),
    "saturation": Param(0.4, 0.0),
    "hue": Param(0.1, 0.0, 0.5),
    "grayscale_p": Param(0.2, 0.0, 1.0),
    "blur_p": Param(0.5, 0.0, 1.0),
    "blur_sigma_min": Param(0.1, 0.0, open_low=True),
    "blur_sigma_max": Param(2.0, 0.0, open_low=True),
    "blur_kernel_fraction": Param(0.1, 0.0, 1.0, open_low=True),
    "flip_p": Param(0.5, 0.0, 1.0),
}
ALL_PARAMS = {
    "p": Param(0.5, 0.0, 1.0),
    "rotate_max_degrees": Param(30.0, 0.0, 180.0),
    "shear_max": Param(0.3, 0.0),
    "sharpness_max_delta": Param(0.9, 0.0, 1.0),
    "contrast_max_delta": Param(0.9, 0.0, 1.0),
    "brightness_max_delta": Param(0.9, 0.0, 1.0),
    "color_max_delta": Param(0.9, 0.0, 1.0),
    "solarize_min_threshold": Param(0.0, 0.0, 1.0),
    "posterize_min_bits": Param(4, 1, 8, integer=True),
    **{
        f"{op}_{name}": rule
        for op, params in sensor.PARAMS.items()
        for name, rule in params.items()
        if name != "p"
    },
}
