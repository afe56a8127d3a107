"""Steps applied in order to one example, each with its own key and coin; random draws."""

from __future__ import annotations

import dataclasses
import functools
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


@dataclasses.dataclass(frozen=True)
class SeparableOp:
    """A linear op that acts on rows and on columns apart (a blur, a flip).

    `apply(key, image)` computes it directly; `matrices(key, height, width)` gives the same op as
    float32 `rows [H, H]` and `columns [W, W]`, output = rows · image · columnsᵀ per channel
    (None for an axis the op leaves alone, which saves a matrix product). On TPU consecutive
    separable ops compose into one pair of matrices (a skipped one is the identity), so the
    image is moved once, by two matrix products (`backend.separable`); on other backends each
    is applied directly (a blur as shifted sums, a flip as a reverse).
    """

    apply: ExampleOp
    matrices: Callable[[jax.Array, int, int], tuple[jax.Array | None, jax.Array | None]]


Step = tuple[ExampleOp | ColumnOp | SeparableOp, float]
"""An op and the probability that it is applied."""

_Run = list[tuple[ColumnOp | SeparableOp, jax.Array, jax.Array]]
"""Consecutive ops of one composable kind, each with its key and coin."""


def chain(steps: list[Step]) -> ExampleOp:
    """Steps applied left to right, each with its own key; a skipped step is a select, so it vmaps.

    All coins come from one draw: every `jax.random` call adds a threefry to the compiled step.
    Column ops in a row are composed into one column index, and separable ops in a row into one
    pair of matrices on TPU (a skipped one is the identity).
    """
    probabilities = np.array([p for _, p in steps], np.float32)

    def apply(key: jax.Array, image: jax.Array) -> jax.Array:
        keys = jax.random.split(key, len(steps) + 1)
        applied = jax.random.uniform(keys[0], (len(steps),)) < probabilities
        run: _Run = []
        for i, (op, _) in enumerate(steps):
            if run and type(op) is not type(run[0][0]):
                image, run = _apply_run(image, run), []
            if isinstance(op, ColumnOp | SeparableOp):
                run.append((op, keys[i + 1], applied[i]))
            elif probabilities[i] >= 1:  # its coin always lands: no select to compute
                image = op(keys[i + 1], image)
            elif probabilities[i] > 0:
                image = jnp.where(applied[i], op(keys[i + 1], image), image)
        return _apply_run(image, run) if run else image

    return apply


def _apply_run(image: jax.Array, run: _Run) -> jax.Array:
    """A column run as one column index; a separable run as each backend runs it best."""
    if isinstance(run[0][0], ColumnOp):
        width = image.shape[1]
        columns = None
        for op, key, applied in run:
            moved = jnp.where(applied, op.columns(key, width), jnp.arange(width))
            columns = moved if columns is None else backend.lookup(columns, moved)
        return backend.take_columns(image, columns)

    return jax.lax.platform_dependent(
        image, tpu=functools.partial(separable_composed, run=run),
        default=functools.partial(separable_one_by_one, run=run))


def separable_one_by_one(image: jax.Array, run: _Run) -> jax.Array:
    for op, key, applied in run:
        image = jnp.where(applied, op.apply(key, image), image)
    return image


def separable_composed(image: jax.Array, run: _Run) -> jax.Array:
    """The run's matrices multiplied into one pair (a skipped op's are the identity)."""
    sizes = image.shape[:2]
    composed = [None, None]
    for op, key, applied in run:
        for axis, matrix in enumerate(op.matrices(key, *sizes)):
            if matrix is None:
                continue
            matrix = jnp.where(applied, matrix, np.eye(sizes[axis], dtype=np.float32))
            composed[axis] = matrix if composed[axis] is None else jnp.matmul(
                matrix, composed[axis], precision=backend.HIGHEST)
    rows, columns = (np.eye(size, dtype=np.float32) if matrix is None else matrix
                     for matrix, size in zip(composed, sizes))
    return backend.separable(image, rows, columns)


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
