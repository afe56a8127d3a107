"""The four sensor-aware ops (translate_x, permute_x, hue, jitter), each with its parameters.

The package docstring says what each stands for and why its defaults are what they are.
`translate_x` and `permute_x` only reorder columns, so they return column indices
(`chain.ColumnOp`) that the chain composes and applies once; their index arithmetic uses
`backend.lookup` and ranks, not sorts, which the TPU compiler does not cost.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp

from img2imu_jax.augment import backend
from img2imu_jax.augment.chain import ColumnOp, Step, pick, short_argsort, symmetric
from img2imu_jax.augment.spec import PROBABILITY, Param


def translate_x(max_fraction: float, p: float) -> Step:
    def columns(key: jax.Array, width: int) -> jax.Array:
        reach = int(max_fraction * width)
        shift = pick(jax.random.uniform(key), 2 * reach + 1) - reach
        return (jnp.arange(width) - shift) % width

    return ColumnOp(columns), p


def permute_x(segments: int, min_share: float, p: float) -> Step:
    def columns(key: jax.Array, width: int) -> jax.Array:
        if segments > width:
            raise ValueError(f"permute_x: {segments} segments do not fit in {width} columns")
        shortest = max(1, int(min_share * width / segments))
        u = jax.random.uniform(key, (2 * segments - 1,))
        # Sorted uniform draws from the slack, each pushed right by one minimum length per cut:
        # every segment is at least `shortest` long, the rest of the length falls at random.
        slack = pick(u[: segments - 1], width - segments * shortest + 1)
        cuts = _sorted(slack) + shortest * jnp.arange(1, segments)
        starts = jnp.pad(cuts, (1, 0))
        lengths = jnp.diff(jnp.pad(starts, (0, 1), constant_values=width))
        order = short_argsort(u[segments - 1 :])
        moved_lengths = backend.lookup(lengths, order)
        placed = jnp.cumsum(moved_lengths) - moved_lengths
        column = jnp.arange(width)
        slot = jnp.sum(column[:, None] >= placed[None, 1:], axis=1)
        source_start = backend.lookup(backend.lookup(starts, order), slot)
        return source_start + column - backend.lookup(placed, slot)

    return ColumnOp(columns), p


def _sorted(values: jax.Array) -> jax.Array:
    """`jnp.sort(values)` for a short vector, from ranks."""
    return backend.lookup(values, short_argsort(values))


def hue(max_degrees: float, p: float) -> Step:
    def op(key: jax.Array, image: jax.Array) -> jax.Array:
        return rotate_about_grey(image, jnp.deg2rad(symmetric(key, max_degrees)))

    return op, p


def rotate_about_grey(image: jax.Array, angle: jax.Array) -> jax.Array:
    """Rotates each RGB vector about the grey axis (1, 1, 1)/√3, keeping the mean of R, G, B.

    Brightness here is that mean: for a spectrogram each channel is one axis's power, and axes
    that a rotation interchanges must weigh alike (luma would count y five times as much as z).
    A rotation keeps the mean exactly but can leave the unit cube; clipping would then change
    the mean, so such a pixel is instead desaturated towards its own grey just enough to fit.
    Angle 0 returns the image unchanged; ±120° permutes the channels cyclically.
    """
    cos, sin = jnp.cos(angle), jnp.sin(angle)
    same, turn = (1 - cos) / 3, sin / math.sqrt(3)
    matrix = jnp.stack([
        jnp.stack([cos + same, same - turn, same + turn]),
        jnp.stack([same + turn, cos + same, same - turn]),
        jnp.stack([same - turn, same + turn, cos + same]),
    ])
    rotated = sum(image[..., k : k + 1] * matrix[:, k] for k in range(3))
    grey = image.mean(axis=-1, keepdims=True)
    chroma = rotated - grey
    room = jnp.where(chroma > 0, 1 - grey, grey)
    fit = jnp.min(room / jnp.maximum(jnp.abs(chroma), 1e-12), axis=-1, keepdims=True)
    return jnp.clip(jnp.where(fit < 1, grey + fit * chroma, rotated), 0.0, 1.0)


def jitter(amplitude: float, p: float) -> Step:
    def op(key: jax.Array, image: jax.Array) -> jax.Array:
        noise = jax.random.uniform(key, image.shape, minval=-amplitude, maxval=amplitude)
        return jnp.clip(image + noise, 0.0, 1.0)

    return op, p


BUILDERS: dict[str, Callable[..., Step]] = {
    "translate_x": translate_x,
    "permute_x": permute_x,
    "hue": hue,
    "jitter": jitter,
}
PARAMS: dict[str, dict[str, Param]] = {
    "translate_x": {"max_fraction": Param(0.5, 0.0, 1.0), "p": PROBABILITY},
    "permute_x": {
        "segments": Param(4, 1, integer=True), "min_share": Param(0.25, 0.0, 1.0),
        "p": PROBABILITY,
    },
    "hue": {"max_degrees": Param(180.0, 0.0, 180.0), "p": PROBABILITY},
    "jitter": {"amplitude": Param(0.05 * math.sqrt(3), 0.0, 1.0), "p": PROBABILITY},
}
