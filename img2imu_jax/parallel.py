"""The device mesh: one axis, `'data'`, over every device of every process."""

from __future__ import annotations

import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

DATA_AXIS = "data"


def data_mesh() -> Mesh:
    """A 1-D mesh over all devices of all processes, in JAX's canonical order."""
    return jax.make_mesh((jax.device_count(),), (DATA_AXIS,))


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Leading (example) axis split over `'data'`; the rest of each array stays whole."""
    return NamedSharding(mesh, PartitionSpec(DATA_AXIS))
