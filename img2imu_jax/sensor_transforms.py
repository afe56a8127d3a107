"""On-device transformations of raw sensor windows `[time, 3]` for the 1D baselines.

The eight signal transformations that Tang et al.'s SimCLR for HAR and Saeed et al.'s
multi-task self-supervision draw on, re-implemented after Tang et al.'s vectorised numpy code
(iantangc/ContrastiveLearningHAR `transformations.py`), with its parameters:

- `jitter`: adds N(0, σ²) noise to every sample; σ = 0.05.
- `scaling`: multiplies each axis by its own factor ~ N(1, σ²), constant over time; σ = 0.1.
- `rotation`: one 3-D rotation of every sample; axis uniform in [−1, 1]³ (normalised), angle
  uniform in [−π, π].
- `negation`: −x.
- `time_flip`: reverses time.
- `permutation`: cuts the window at 4 points drawn with replacement (so up to 5 segments) and
  shuffles the segments.
- `time_warp`: resamples each axis along its own smooth time distortion: a cubic spline
  (not-a-knot, as scipy's `CubicSpline`) through 6 evenly spaced speeds ~ N(1, σ²), σ = 0.2,
  integrated and rescaled to span the window; linear interpolation.
- `channel_shuffle`: reorders the axes by one of the 5 permutations other than the identity.

One difference from the reference: the time-warp speed is floored at 1e-3 so the distortion
is strictly increasing, as `jnp.interp` needs (the reference has no floor; at σ = 0.2 a speed
below it is a > 5σ event). To stay jittable the spline is a fixed matrix of scipy's cubic
spline basis evaluated on the host at trace time, applied to the random knot values on the
device (the spline is linear in them, so this is the same curve).

`make_sensor_transform("rotation|time_warp")` chains transformations left to right into a
batched function `transform(key, windows, indices)`; example `b` draws from
`fold_in(key, indices[b])`, so a device's shard of a global batch gets the views the whole
batch would get on one device, as the image augmentations do.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import scipy.interpolate

Transform = Callable[[jax.Array, jax.Array], jax.Array]  # (key, window [T, C]) -> [T, C]

JITTER_SIGMA = 0.05
SCALING_SIGMA = 0.1
PERMUTATION_CUTS = 4
TIME_WARP_SIGMA = 0.2
TIME_WARP_KNOTS = 4
MIN_WARP_SPEED = 1e-3


def jitter(key: jax.Array, window: jax.Array) -> jax.Array:
    return window + JITTER_SIGMA * jax.random.normal(key, window.shape, window.dtype)


def scaling(key: jax.Array, window: jax.Array) -> jax.Array:
    factors = 1.0 + SCALING_SIGMA * jax.random.normal(key, (1, window.shape[1]), window.dtype)
    return window * factors


def rotation(key: jax.Array, window: jax.Array) -> jax.Array:
    if window.shape[1] != 3:
        raise ValueError(f"rotation needs 3 axes; got a window of shape {window.shape}")
    axis_key, angle_key = jax.random.split(key)
    axis = jax.random.uniform(axis_key, (3,), minval=-1.0, maxval=1.0)
    angle = jax.random.uniform(angle_key, (), minval=-jnp.pi, maxval=jnp.pi)
    return window @ rotation_matrix(axis, angle).astype(window.dtype)


def rotation_matrix(axis: jax.Array, angle: jax.Array) -> jax.Array:
    """Rodrigues' formula: the rotation by `angle` radians about `axis` (any length)."""
    u = axis / jnp.linalg.norm(axis)
    cross = jnp.array([[0.0, -u[2], u[1]], [u[2], 0.0, -u[0]], [-u[1], u[0], 0.0]])
    return (jnp.cos(angle) * jnp.eye(3) + jnp.sin(angle) * cross
            + (1 - jnp.cos(angle)) * jnp.outer(u, u))


def negation(key: jax.Array, window: jax.Array) -> jax.Array:
    del key
    return -window


def time_flip(key: jax.Array, window: jax.Array) -> jax.Array:
    del key
    return window[::-1]


def permutation(key: jax.Array, window: jax.Array) -> jax.Array:
    """Segments between sorted random cut points, in a random order; within a segment the
    samples keep their order (one stable sort by (new segment rank, time))."""
    length = window.shape[0]
    cut_key, order_key = jax.random.split(key)
    cuts = jnp.sort(jax.random.randint(cut_key, (PERMUTATION_CUTS,), 0, length))
    time = jnp.arange(length)
    segment = jnp.sum(time[:, None] >= cuts[None, :], axis=1)  # 0 … PERMUTATION_CUTS
    rank = jnp.argsort(jax.random.permutation(order_key, PERMUTATION_CUTS + 1))
    return window[jnp.argsort(rank[segment] * length + time)]


@functools.lru_cache(maxsize=None)
def _spline_basis(length: int, knots: int) -> np.ndarray:
    """`[length, knots + 2]`: column j is the not-a-knot cubic spline through the unit vector
    e_j at evenly spaced knots over 0 … length − 1, evaluated at every time step."""
    positions = np.arange(knots + 2) * (length - 1) / (knots + 1)
    return scipy.interpolate.CubicSpline(positions, np.eye(knots + 2))(
        np.arange(length)).astype(np.float32)


def time_warp(key: jax.Array, window: jax.Array) -> jax.Array:
    length, channels = window.shape
    knot_speeds = 1.0 + TIME_WARP_SIGMA * jax.random.normal(key, (TIME_WARP_KNOTS + 2, channels))
    speed = jnp.maximum(jnp.asarray(_spline_basis(length, TIME_WARP_KNOTS)) @ knot_speeds,
                        MIN_WARP_SPEED)
    elapsed = jnp.cumsum(speed, axis=0)
    distorted = elapsed / elapsed[-1] * (length - 1)  # where each sample moves to, per axis
    time = jnp.arange(length, dtype=jnp.float32)
    warped = jax.vmap(lambda xp, fp: jnp.interp(time, xp, fp), in_axes=1, out_axes=1)(
        distorted, window.astype(jnp.float32))
    return warped.astype(window.dtype)


def channel_shuffle(key: jax.Array, window: jax.Array) -> jax.Array:
    orders = jnp.array(list(itertools.permutations(range(window.shape[1])))[1:])
    return window[:, orders[jax.random.randint(key, (), 0, len(orders))]]


TRANSFORMS: dict[str, Transform] = {
    "jitter": jitter, "scaling": scaling, "rotation": rotation, "negation": negation,
    "time_flip": time_flip, "permutation": permutation, "time_warp": time_warp,
    "channel_shuffle": channel_shuffle,
}

BatchedTransform = Callable[[jax.Array, jax.Array, jax.Array], jax.Array]


def parse_spec(spec: str) -> tuple[str, ...]:
    """`"a|b"` → `("a", "b")`, each a known transformation (a ValueError names the bad one)."""
    names = tuple(name.strip() for name in spec.split("|")) if spec.strip() else ()
    if not names:
        raise ValueError(f"sensor transformation spec is empty; give names joined by '|' from: "
                         f"{', '.join(TRANSFORMS)}")
    for name in names:
        if name not in TRANSFORMS:
            raise ValueError(f"unknown sensor transformation {name!r} in {spec!r}; known: "
                             f"{', '.join(TRANSFORMS)}")
    return names


def batched(transform: Transform) -> BatchedTransform:
    """`transform` over a batch `[B, T, C]`, example b keyed by `fold_in(key, indices[b])`."""

    def apply(key: jax.Array, windows: jax.Array, indices: jax.Array) -> jax.Array:
        keys = jax.vmap(lambda index: jax.random.fold_in(key, index))(indices)
        return jax.vmap(transform)(keys, windows)

    return apply


def make_sensor_transform(spec: str) -> BatchedTransform:
    """The transformations `spec` names, applied left to right, each with its own key."""
    steps = [TRANSFORMS[name] for name in parse_spec(spec)]

    def chain(key: jax.Array, window: jax.Array) -> jax.Array:
        for i, step in enumerate(steps):
            window = step(jax.random.fold_in(key, i), window)
        return window

    return batched(chain)
