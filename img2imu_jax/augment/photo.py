"""Photo augmentations: the mild `crop` and the paper's two baselines, `mocov2` and `all`.

The package docstring gives their semantics (torchvision's and PIL's formulas) and defaults.
Pixel movements (crop, shear) go through `backend`, which picks each backend's form.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from img2imu_jax.augment import backend, sensor
from img2imu_jax.augment.chain import (
    ExampleOp, Step, between, chain, pick, short_argsort, symmetric)
from img2imu_jax.augment.spec import PROBABILITY, Param

# ITU-R 601 luma, what PIL's "L" mode and torchvision's rgb_to_grayscale use.
_LUMA = (0.299, 0.587, 0.114)
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

    def color_jitter(key: jax.Array, image: jax.Array) -> jax.Array:
        """torchvision's four adjustments in a random order, each computed once.

        Under vmap the order is per example, so a select per slot would compute all four ops
        in all four slots. Brightness, contrast and saturation are one blend towards a
        degenerate image (black, mean grey, grey), so three blend slots run before the hue
        shift and three after, each the op of that slot or the identity (factor 1, exact on
        [0, 1]), and the hue shift runs once.
        """
        u = jax.random.uniform(key, (8,))
        factors = jnp.stack([
            between(u[i], max(0.0, 1 - s), 1 + s)
            for i, s in enumerate((brightness, contrast, saturation))
        ])
        order = short_argsort(u[4:])  # torchvision applies the four in a random order; 3 = hue
        hue_slot = jnp.argmax(order == 3)

        def blend_slot(image, slot, active):
            op = jnp.minimum(order[slot], 2)
            grey = _grey(image)
            degenerate = jax.lax.select_n(
                op, jnp.zeros_like(image), jnp.broadcast_to(jnp.mean(grey), image.shape),
                jnp.broadcast_to(grey, image.shape))
            return _blend(image, degenerate, jnp.where(active, factors[op], 1.0))

        for slot in range(3):
            image = blend_slot(image, slot, slot < hue_slot)
        image = _shift_hue(image, between(u[3], -hue, hue))
        for slot in range(1, 4):
            image = blend_slot(image, slot, slot > hue_slot)
        return image

    def blur(key: jax.Array, image: jax.Array) -> jax.Array:
        radius = max(1, int(blur_kernel_fraction * min(image.shape[:2])) // 2)
        sigma = jax.random.uniform(key, (), minval=blur_sigma_min, maxval=blur_sigma_max)
        return _gaussian_blur(image, sigma, radius)

    return chain([
        (crop, 1.0),
        (color_jitter, color_jitter_p),
        (lambda key, image: _grayscale(image), grayscale_p),
        (blur, blur_p),
        (lambda key, image: image[:, ::-1], flip_p),
    ]), 1.0


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
    """torchvision's RandomResizedCrop box `(top, left, h, w)`: tries vectorised, first fit wins."""
    u = jax.random.uniform(key, (2 * _CROP_TRIES + 2,))
    area = height * width * between(u[:_CROP_TRIES], *scale)
    aspect = jnp.exp(between(u[_CROP_TRIES:-2], math.log(ratio[0]), math.log(ratio[1])))
    w = jnp.round(jnp.sqrt(area * aspect)).astype(jnp.int32)
    h = jnp.round(jnp.sqrt(area / aspect)).astype(jnp.int32)
    fits = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = jnp.argmax(fits)
    fallback_h, fallback_w = _central_crop_size(height, width, ratio)
    found = fits.any()
    h = jnp.where(found, h[first], fallback_h)
    w = jnp.where(found, w[first], fallback_w)
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


def _grey(image: jax.Array) -> jax.Array:
    return sum(weight * image[..., k : k + 1] for k, weight in enumerate(_LUMA))


def _grayscale(image: jax.Array) -> jax.Array:
    return jnp.broadcast_to(_grey(image), image.shape)


def _blend(image: jax.Array, degenerate: jax.Array, factor: jax.Array) -> jax.Array:
    """PIL's ImageEnhance and torchvision's adjust_*: extrapolate from `degenerate`, clip."""
    return jnp.clip(degenerate + factor * (image - degenerate), 0.0, 1.0)


def _brightness(image: jax.Array, factor: jax.Array) -> jax.Array:
    return _blend(image, jnp.zeros_like(image), factor)


def _contrast(image: jax.Array, factor: jax.Array) -> jax.Array:
    return _blend(image, jnp.mean(_grey(image)), factor)


def _saturation(image: jax.Array, factor: jax.Array) -> jax.Array:
    return _blend(image, _grey(image), factor)


def _rgb_to_hsv(image: jax.Array) -> jax.Array:
    r, g, b = (image[..., k] for k in range(3))
    value = image.max(axis=-1)
    chroma = value - image.min(axis=-1)
    saturation = jnp.where(value > 0, chroma / jnp.where(value > 0, value, 1), 0)
    safe = jnp.where(chroma > 0, chroma, 1)
    sector = jnp.where(
        value == r, (g - b) / safe, jnp.where(value == g, 2 + (b - r) / safe, 4 + (r - g) / safe)
    )
    hue = jnp.where(chroma > 0, (sector / 6) % 1, 0)
    return jnp.stack([hue, saturation, value], axis=-1)


def _shift_hue(image: jax.Array, shift: jax.Array) -> jax.Array:
    """torchvision's adjust_hue: the HSV hue moved by `shift` turns, saturation and value kept."""
    hsv = _rgb_to_hsv(image)
    return _hsv_to_rgb(hsv.at[..., 0].set((hsv[..., 0] + shift) % 1))


def _hsv_to_rgb(hsv: jax.Array) -> jax.Array:
    hue, saturation, value = (hsv[..., k : k + 1] for k in range(3))
    k = (jnp.array([5.0, 3.0, 1.0]) + 6 * hue) % 6
    return value - value * saturation * jnp.clip(jnp.minimum(k, 4 - k), 0, 1)


def _gaussian_blur(image: jax.Array, sigma: jax.Array, radius: int) -> jax.Array:
    """Separable Gaussian with `2·radius + 1` taps and reflected edges, as torchvision's."""
    taps = jnp.arange(-radius, radius + 1, dtype=jnp.float32)
    weights = jnp.exp(-0.5 * (taps / sigma) ** 2)
    weights = weights / weights.sum()
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
        enhance(_contrast, contrast_max_delta),
        enhance(_brightness, brightness_max_delta),
        enhance(_saturation, color_max_delta),
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
    return _blend(image, jnp.where(interior, smooth, image), factor)


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
