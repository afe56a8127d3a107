"""Steps applied in order to one example, each with its own key and coin; random draws."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from img2imu_jax.augment import backend

ExampleOp = Callable[[jax.Array, jax.Array], jax.Array]
"""`(key, image [H, W, 3]) -> image`: one example's augmentation, vmapped over the batch."""


@dataclasses.dataclass(frozen=True)
class ColumnOp:
    """An op that only reorders whole columns: `columns(key, width)` → int32 `[width]`, output
    column j being input column `columns[j]`.

    Consecutive column ops compose into one index, so the image is moved once, by
    `backend.take_columns`, however many of them run.
    """

    columns: Callable[[jax.Array, int], jax.Array]


Step = tuple[ExampleOp | ColumnOp, float]
"""An op and the probability that it is applied."""


def chain(steps: list[Step]) -> ExampleOp:
    """Steps applied left to right, each with its own key; a skipped step is a select, so it vmaps.

    All coins come from one draw: every `jax.random` call adds a threefry to the compiled step.
    Column ops in a row are composed into one column index (a skipped one is the identity).
    """
    probabilities = np.array([p for _, p in steps], np.float32)

    def apply(key: jax.Array, image: jax.Array) -> jax.Array:
        keys = jax.random.split(key, len(steps) + 1)
        applied = jax.random.uniform(keys[0], (len(steps),)) < probabilities
        columns = None
        for i, (op, _) in enumerate(steps):
            if isinstance(op, ColumnOp):
                width = image.shape[1]
                moved = jnp.where(applied[i], op.columns(keys[i + 1], width), jnp.arange(width))
                columns = moved if columns is None else backend.lookup(columns, moved)
                continue
            if columns is not None:
                image, columns = backend.take_columns(image, columns), None
            image = jnp.where(applied[i], op(keys[i + 1], image), image)
        return image if columns is None else backend.take_columns(image, columns)

    return apply


def symmetric(key: jax.Array, reach: float) -> jax.Array:
    return jax.random.uniform(key, (), minval=-reach, maxval=reach)


def between(u: jax.Array, low: float | jax.Array, high: float | jax.Array) -> jax.Array:
    """Uniform draws `u` in [0, 1) mapped to [low, high)."""
    return low + (high - low) * u


def pick(u: jax.Array, count: int | jax.Array) -> jax.Array:
    """Uniform draws `u` in [0, 1) mapped to integers in [0, count)."""
    return jnp.minimum(jnp.floor(u * count), count - 1).astype(jnp.int32)


def _ranks(values: jax.Array) -> jax.Array:
    """Each value's place in a stable ascending sort (ties keep their order)."""
    index = jnp.arange(values.shape[0])
    before = (values[None, :] < values[:, None]) | (
        (values[None, :] == values[:, None]) & (index[None, :] < index[:, None])
    )
    return jnp.sum(before, axis=1)


def short_argsort(values: jax.Array) -> jax.Array:
    """`jnp.argsort(values)` (stable) for a short vector, from ranks: no sort instruction,
    to which the TPU compiler gives no cost estimate."""
    hits = _ranks(values)[None, :] == jnp.arange(values.shape[0])[:, None]
    return jnp.sum(jnp.where(hits, jnp.arange(values.shape[0]), 0), axis=1)
