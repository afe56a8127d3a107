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


def spans_devices(axis_name: str | None) -> bool:
    """Whether `axis_name` (inside `shard_map`/`pmap`) joins more than one device.

    A one-device program skips its collectives: XLA:CPU leaves such all-reduces in the compiled
    step (51 in the paper recipe's; benchmarks/RESULTS.md), and on a GPU each is still a kernel launch.
    """
    return axis_name is not None and jax.lax.axis_size(axis_name) > 1


def pmean(x, axis_name: str | None):
    """`lax.pmean` over `axis_name`, or `x` itself where the axis has one device (or is None)."""
    return jax.lax.pmean(x, axis_name) if spans_devices(axis_name) else x


def all_gather(x: jax.Array, axis_name: str | None) -> jax.Array:
    """`lax.all_gather(tiled=True)` over `axis_name`, or `x` where the axis has one device."""
    return jax.lax.all_gather(x, axis_name, tiled=True) if spans_devices(axis_name) else x
