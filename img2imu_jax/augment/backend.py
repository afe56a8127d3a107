"""Pixel movements written once per backend, the one for the backend at hand chosen at compile time.

XLA:CPU (and GPU) gather cheaply and run small dense matmuls slowly; the TPU compiler costs a
gather far above the same movement as a matmul on its matrix unit. `jax.lax.platform_dependent`
compiles only the branch of the backend it lowers for, so each op below is a gather on CPU/GPU
and, on TPU, a one-hot or interpolation-matrix product at precision HIGHEST (exact for one-hot
weights: the float32 operand is split into bf16 parts that multiply 1 and 0 exactly). The two
forms agree within float rounding (tests/test_augment.py calls each `*_tpu` form on CPU);
benchmarks/RESULTS.md has the compiler's costs and the CPU timings that chose them.
"""

from __future__ import annotations


import jax
import jax.numpy as jnp

HIGHEST = jax.lax.Precision.HIGHEST
# AutoAugment's fill for pixels that rotate or shear in from outside the image.
FILL = 0.5


def take_columns(image: jax.Array, columns: jax.Array) -> jax.Array:
    """`image[:, columns]` for one example `[H, W, C]` and an int index `[W]`."""
    return jax.lax.platform_dependent(
        image, columns, tpu=take_columns_tpu, default=take_columns_gather
    )


def take_columns_gather(image: jax.Array, columns: jax.Array) -> jax.Array:
    return jnp.take(image, columns, axis=1)


def take_columns_tpu(image: jax.Array, columns: jax.Array) -> jax.Array:
    one_hot = (columns[:, None] == jnp.arange(image.shape[1])).astype(image.dtype)
    return jnp.einsum("hwc,vw->hvc", image, one_hot, precision=HIGHEST)


def lookup(values: jax.Array, positions: jax.Array) -> jax.Array:
    """`values[positions]` for a short integer vector `values` (an index, a segment table)."""
    return jax.lax.platform_dependent(values, positions, tpu=lookup_tpu, default=lookup_gather)


def lookup_gather(values: jax.Array, positions: jax.Array) -> jax.Array:
    return values[positions]


def lookup_tpu(values: jax.Array, positions: jax.Array) -> jax.Array:
    hits = positions[..., None] == jnp.arange(values.shape[0])
    return jnp.sum(jnp.where(hits, values, 0), axis=-1).astype(values.dtype)


def resize_box(
    image: jax.Array, top: jax.Array, left: jax.Array, h: jax.Array, w: jax.Array
) -> jax.Array:
    """The box resized to the image's size with linear interpolation, edges clamped to the box.

    Equals `jax.image.resize(box, image.shape, "linear")` (crops only upsample): a 4-tap gather,
    O(pixels), off TPU; two interpolation matrices (rows, then columns) on TPU.
    """
    return jax.lax.platform_dependent(
        image, top, left, h, w, tpu=resize_box_tpu, default=resize_box_gather
    )


def _box_positions(image, top, left, h, w):
    height, width = image.shape[:2]
    ys = top + jnp.clip((jnp.arange(height) + 0.5) * h / height - 0.5, 0, h - 1)
    xs = left + jnp.clip((jnp.arange(width) + 0.5) * w / width - 0.5, 0, w - 1)
    return ys, xs


def resize_box_gather(image, top, left, h, w):
    ys, xs = _box_positions(image, top, left, h, w)
    return sample_bilinear(image, *jnp.meshgrid(ys, xs, indexing="ij"))


def resize_box_tpu(image, top, left, h, w):
    ys, xs = _box_positions(image, top, left, h, w)
    return separable(image, interpolation_matrix(ys, image.shape[0]),
                     interpolation_matrix(xs, image.shape[1]))


def separable(image: jax.Array, rows: jax.Array, columns: jax.Array) -> jax.Array:
    """`rows [H', H] · image · columnsᵀ [W, W']` for each channel of `image [H, W, C]`."""
    return jnp.einsum("iy,yxc,jx->ijc", rows, image, columns, precision=HIGHEST)


def interpolation_matrix(positions: jax.Array, size: int) -> jax.Array:
    """Linear-interpolation weights `[..., size]` of fractional `positions` over `size` samples.

    Taps outside 0…size-1 get no column, so a row sums to less than 1 by the weight they carry.
    """
    low = jnp.floor(positions)[..., None]
    frac = (positions[..., None] - low).astype(jnp.float32)
    taps = jnp.arange(size, dtype=low.dtype)
    return jnp.where(taps == low, 1 - frac, 0.0) + jnp.where(taps == low + 1, frac, 0.0)


def warp_positions(shape: tuple[int, ...], matrix: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Where output pixel (y, x) reads the input: `matrix @ (y, x)`, both about the centre."""
    height, width = shape[:2]
    cy, cx = (height - 1) / 2, (width - 1) / 2
    y, x = jnp.meshgrid(jnp.arange(height) - cy, jnp.arange(width) - cx, indexing="ij")
    ys = matrix[0, 0] * y + matrix[0, 1] * x + cy
    xs = matrix[1, 0] * y + matrix[1, 1] * x + cx
    return ys, xs


def warp(image: jax.Array, matrix: jax.Array) -> jax.Array:
    """Any affine warp about the centre as a 4-tap gather, on every backend.

    A rotation moves rows and columns together, so no pair of per-axis matrices computes it
    exactly; its TPU alternatives (a dense one-hot over all pixels, or three shears) are either
    far costlier or a different image, so rotations stay a gather.
    """
    return sample_bilinear(image, *warp_positions(image.shape, matrix))


def shear(image: jax.Array, matrix: jax.Array, along_x: jax.Array) -> jax.Array:
    """`warp` for a shear matrix `[[1, 0], [s, 1]]` (`along_x`) or `[[1, s], [0, 1]]`."""
    ys, xs = warp_positions(image.shape, matrix)
    return jax.lax.platform_dependent(
        image, ys, xs, along_x, tpu=shear_tpu, default=shear_gather
    )


def shear_gather(image, ys, xs, along_x):
    del along_x  # the positions say it
    return sample_bilinear(image, ys, xs)


def shear_tpu(image, ys, xs, along_x):
    """Rows (or columns) resampled one line at a time: each line's own interpolation matrix.

    A shear along x reads whole-numbered rows (and along y whole-numbered columns), so one
    1-D interpolation per line is the bilinear sample exactly.
    """
    by_rows = _resample_lines(image, xs)
    by_columns = _resample_lines(image.transpose(1, 0, 2), ys.T).transpose(1, 0, 2)
    return jnp.where(along_x, by_rows, by_columns)


def _resample_lines(image: jax.Array, positions: jax.Array) -> jax.Array:
    """Row y of `image` read at fractional columns `positions[y]`; outside taps read FILL."""
    weights = interpolation_matrix(positions, image.shape[1])
    inside = jnp.einsum("yjx,yxc->yjc", weights, image, precision=HIGHEST)
    return inside + FILL * (1 - weights.sum(-1))[..., None]


def sample_bilinear(
    image: jax.Array, ys: jax.Array, xs: jax.Array, fill: float = FILL
) -> jax.Array:
    """The image at fractional (row, column) positions; taps outside the image read `fill`."""
    height, width = image.shape[:2]
    y0, x0 = jnp.floor(ys), jnp.floor(xs)
    fy, fx = (ys - y0)[..., None], (xs - x0)[..., None]
    pixels = image.reshape(-1, image.shape[-1])
    out = jnp.zeros((*ys.shape, image.shape[-1]), image.dtype)
    for y, wy in ((y0, 1 - fy), (y0 + 1, fy)):
        for x, wx in ((x0, 1 - fx), (x0 + 1, fx)):
            inside = ((y >= 0) & (y < height) & (x >= 0) & (x < width))[..., None]
            flat = jnp.clip(y, 0, height - 1) * width + jnp.clip(x, 0, width - 1)
            out = out + wy * wx * jnp.where(inside, pixels[flat.astype(jnp.int32)], fill)
    return out
