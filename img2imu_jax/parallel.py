"""The device mesh: one axis, `'data'`, over every device of every process."""

from __future__ import annotations

from collections.abc import Sequence

import jax
from jax.experimental import mesh_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

DATA_AXIS = "data"


def data_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A 1-D mesh over `devices` (default: all devices of all processes), canonical order.

    The axis is `Auto` (XLA propagates shardings through per-example code) rather than
    `jax.make_mesh`'s newer `Explicit` default, under which vmapped code that mixes constants
    with sharded per-example values fails to trace. Devices of several slices (multislice TPU)
    are laid out by `create_hybrid_device_mesh`: neighbours on the axis share a slice's ICI,
    and only the slice boundaries cross the data-centre network.
    """
    devices = list(jax.devices() if devices is None else devices)
    slices = {getattr(device, "slice_index", 0) for device in devices}
    auto = (jax.sharding.AxisType.Auto,)
    if len(slices) > 1:
        grid = mesh_utils.create_hybrid_device_mesh(
            (len(devices) // len(slices),), (len(slices),), devices)
        return Mesh(grid, (DATA_AXIS,), axis_types=auto)
    return jax.make_mesh((len(devices),), (DATA_AXIS,), axis_types=auto, devices=devices)


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
