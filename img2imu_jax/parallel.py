"""The device mesh: one axis, `'data'`, over every device of every process."""

from __future__ import annotations

import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

DATA_AXIS = "data"


def data_mesh() -> Mesh:
    """A 1-D mesh over all devices of all processes, in JAX's canonical order.

    The axis is `Auto` (XLA propagates shardings through per-example code) rather than
    `jax.make_mesh`'s newer `Explicit` default, under which vmapped code that mixes constants
    with sharded per-example values fails to trace.
    """
    return jax.make_mesh(
        (jax.device_count(),), (DATA_AXIS,), axis_types=(jax.sharding.AxisType.Auto,)
    )


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Leading (example) axis split over `'data'`; the rest of each array stays whole."""
    return NamedSharding(mesh, PartitionSpec(DATA_AXIS))
