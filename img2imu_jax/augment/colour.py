"""Colour adjustments with PIL's and torchvision's formulas, and MoCo v2's colour jitter.

The jitter applies brightness, contrast, saturation and hue in a random order per example;
contrast blends towards the mean grey of the image as it reaches contrast. Off TPU each blend
slot takes its own input's mean (six reductions, one of them used), on the image as one
`[H, W, 3]` array. On TPU, where the compiler gives each reduction and each step that mixes
the channels its own pass over the images, the mean is found once, by a first pass that stops
before contrast, and the colour planes are kept apart (`Parts`). The two forms agree within
float rounding (tests/test_augment.py); the compiler's costs are in benchmarks/RESULTS.md.

Not dm-pix: it follows TensorFlow's formulas (additive brightness, contrast about each channel's
own mean, saturation scaled in HSV), which differ from torchvision's by up to 0.3 on [0, 1]
images; only its hue shift and HSV conversion match ours (within 1e-6), and those reduce over
the channel axis, the pass the TPU form here avoids (benchmarks/RESULTS.md)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from img2imu_jax.augment import backend
from img2imu_jax.augment.chain import ExampleOp, between, short_argsort

# ITU-R 601 luma, what PIL's "L" mode and torchvision's rgb_to_grayscale use.
LUMA = (0.299, 0.587, 0.114)
# torchvision's ColorJitter order: op ids in `order`.
BRIGHTNESS, CONTRAST, SATURATION, HUE = range(4)


Parts = tuple[jax.Array, ...]
"""An image as arrays `[..., c]` whose channels in turn are R, G, B: the whole image, or planes."""


def _planes(parts: Parts) -> list[jax.Array]:
    return [part[..., k : k + 1] for part in parts for k in range(part.shape[-1])]


def _split_like(parts: Parts, image: jax.Array) -> Parts:
    return (image,) if len(parts) == 1 else tuple(_planes((image,)))


def _luma(parts: Parts) -> jax.Array:
    return sum(weight * plane for weight, plane in zip(LUMA, _planes(parts)))


def grey(image: jax.Array) -> jax.Array:
    """Luma `[..., 1]` of an RGB image `[..., 3]`."""
    return _luma((image,))


def grayscale(image: jax.Array) -> jax.Array:
    return jnp.broadcast_to(grey(image), image.shape)


def blend(image: jax.Array, degenerate: jax.Array, factor: jax.Array) -> jax.Array:
    """PIL's ImageEnhance and torchvision's adjust_*: extrapolate from `degenerate`, clip."""
    return jnp.clip(degenerate + factor * (image - degenerate), 0.0, 1.0)


def brightness(image: jax.Array, factor: jax.Array) -> jax.Array:
    return blend(image, jnp.zeros_like(image), factor)


def contrast(image: jax.Array, factor: jax.Array) -> jax.Array:
    return blend(image, jnp.mean(grey(image)), factor)


def saturation(image: jax.Array, factor: jax.Array) -> jax.Array:
    return blend(image, grey(image), factor)


def _hsv(parts: Parts) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Hue, saturation and value `[..., 1]`, channel by channel (no reduction pass)."""
    r, g, b = _planes(parts)
    value = jnp.maximum(jnp.maximum(r, g), b)
    chroma = value - jnp.minimum(jnp.minimum(r, g), b)
    saturation = jnp.where(value > 0, chroma / jnp.where(value > 0, value, 1), 0)
    safe = jnp.where(chroma > 0, chroma, 1)
    sector = jnp.where(
        value == r, (g - b) / safe, jnp.where(value == g, 2 + (b - r) / safe, 4 + (r - g) / safe)
    )
    hue = jnp.where(chroma > 0, (sector / 6) % 1, 0)
    return hue, saturation, value


def _rgb(hsv: tuple[jax.Array, jax.Array, jax.Array], like: Parts) -> Parts:
    """RGB from hue, saturation and value, split into parts as `like` is."""
    hue, saturation, value = hsv
    return tuple(
        value - value * saturation * jnp.clip(jnp.minimum(k, 4 - k), 0, 1)
        for k in ((offset + 6 * hue) % 6
                  for offset in _split_like(like, jnp.array([5.0, 3.0, 1.0])))
    )


def rgb_to_hsv(image: jax.Array) -> jax.Array:
    return jnp.concatenate(_hsv((image,)), axis=-1)


def hsv_to_rgb(hsv: jax.Array) -> jax.Array:
    return _rgb(_planes((hsv,)), (hsv,))[0]


def shift_hue(image: jax.Array, shift: jax.Array) -> jax.Array:
    """torchvision's adjust_hue: the HSV hue moved by `shift` turns, saturation and value kept."""
    hue, saturation, value = _hsv((image,))
    return _rgb(((hue + shift) % 1, saturation, value), (image,))[0]


def color_jitter(brightness: float, contrast: float, saturation: float, hue: float) -> ExampleOp:
    """torchvision's ColorJitter: the four adjustments in a random order, each computed once."""

    def jitter(key: jax.Array, image: jax.Array) -> jax.Array:
        u = jax.random.uniform(key, (8,))
        factors = jnp.stack([
            between(u[i], max(0.0, 1 - s), 1 + s)
            for i, s in enumerate((brightness, contrast, saturation))
        ])
        order = short_argsort(u[4:])  # order[slot] is the op applied in that slot
        shift = between(u[3], -hue, hue)
        return jax.lax.platform_dependent(
            image, factors, order, shift, tpu=jitter_two_passes, default=jitter_in_slots)

    return jitter


def jitter_in_slots(
    image: jax.Array, factors: jax.Array, order: jax.Array, shift: jax.Array
) -> jax.Array:
    """Each blend slot finds its own contrast mean (six reductions)."""
    return _adjust_in_order((image,), factors, order, shift)[0]


def jitter_two_passes(
    image: jax.Array, factors: jax.Array, order: jax.Array, shift: jax.Array
) -> jax.Array:
    """The mean grey of the image as contrast receives it first, then all four with it.

    The colour planes are kept apart: every adjustment mixes the channels, and the TPU compiler
    lays an image out one channel plane after another, so as one `[H, W, 3]` array each output
    channel would recompute or store all of the previous step (measured: 2.8 ms per view of 256
    on v5e as one array, 0.8 ms as planes).
    """
    planes = _planes((image,))
    contrast_slot = jnp.argmax(order == CONTRAST)
    before = _adjust_in_order(planes, factors, order, shift, until=contrast_slot,
                              contrast_mean=jnp.zeros(()))
    mean = jnp.mean(_luma(before))
    return jnp.concatenate(_adjust_in_order(planes, factors, order, shift, contrast_mean=mean),
                           axis=-1)


def _adjust_in_order(
    parts: Parts,
    factors: jax.Array,
    order: jax.Array,
    shift: jax.Array,
    *,
    until: jax.Array | None = None,
    contrast_mean: jax.Array | None = None,
) -> Parts:
    """The adjustments in slots `order` (those in slots ≥ `until` left out), each computed once.

    Under vmap the order is per example, so a select per slot would compute all four ops in all
    four slots. Brightness, contrast and saturation are one blend towards a degenerate image
    (black, mean grey, grey), so three blend slots run before the hue shift and three after,
    each the op of that slot or the identity (factor 1, exact on [0, 1]), and the hue shift runs
    once. Contrast's mean grey is `contrast_mean`, or where None each slot's input's.
    """
    hue_slot = jnp.argmax(order == HUE)

    def blend_slot(parts, slot, active):
        op = jnp.minimum(order[slot], SATURATION)
        luma = _luma(parts)
        mean = jnp.mean(luma) if contrast_mean is None else contrast_mean
        if until is not None:
            active = active & (slot < until)
        factor = jnp.where(active, backend.lookup(factors, op), 1.0)
        return tuple(
            blend(part, jax.lax.select_n(op, jnp.zeros_like(part),
                                         jnp.broadcast_to(mean, part.shape),
                                         jnp.broadcast_to(luma, part.shape)), factor)
            for part in parts)

    for slot in range(3):
        parts = blend_slot(parts, slot, slot < hue_slot)
    hue, saturation, value = _hsv(parts)
    shifted = _rgb(((hue + shift) % 1, saturation, value), parts)
    parts = shifted if until is None else tuple(
        jnp.where(hue_slot < until, new, old) for new, old in zip(shifted, parts))
    for slot in range(1, 4):
        parts = blend_slot(parts, slot, slot > hue_slot)
    return parts
