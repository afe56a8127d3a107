"""Where a network's BatchNorm statistics come from: the global batch, ghost groups, or MoCo's
shuffle. Each runs a network in train mode inside the per-device step (`shard_map` over
`'data'`) and returns its outputs and the updated running statistics, the same on every device.

- `apply_global`: a graphdef built with `bn_axis_name='data'`; every BatchNorm averages its
  moments over the global batch (SimCLR's global BN, SyncBN).
- `apply_in_groups`: a graphdef built with `bn_axis_name=None`; the device's batch is cut into
  consecutive groups of `group_size`, each normalised by its own moments ("ghost" BatchNorm,
  Hoffer et al. 2017). The running statistics are the mean of every group's update.
- `apply_shuffled`: MoCo's Shuffle BN (facebookresearch/moco `_batch_shuffle_ddp`), in groups.
  A permutation of the global batch, the same on every device (`shuffle_order(key, N)`), puts
  example `order[j]` at position `j`; device d runs positions `[d·n, (d+1)·n)` in groups, and
  every output goes back to its own example's device and row. Position `j` lies in group
  `j // group_size` whatever the device count, so for one permutation the result does not
  depend on how many devices share the batch (tested). The rows move by gathers on CPU/GPU and
  by exact one-hot matmuls on TPU, whose compiler costs a gather far above the matmul.

Call `fn(net, images)` decides what is computed (projections, or projections and predictions).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx
from jax import lax

from img2imu_jax.parallel import DATA_AXIS, all_gather, pmean

Call = Callable[[nnx.Module, jax.Array], Any]


def apply_global(graphdef: nnx.GraphDef, params: nnx.State, stats: nnx.State,
                 images: jax.Array, fn: Call) -> tuple[Any, nnx.State]:
    """`fn(net, images)` in train mode; the statistics are whatever the graphdef's BN names."""
    # Fresh BatchStat variables in this trace, where BatchNorm updates them.
    net = nnx.merge(graphdef, params, jax.tree.map(jnp.asarray, stats))
    net.train()
    return fn(net, images), nnx.state(net, nnx.BatchStat)


def apply_in_groups(graphdef: nnx.GraphDef, params: nnx.State, stats: nnx.State,
                    images: jax.Array, fn: Call, group_size: int,
                    axis_name: str = DATA_AXIS) -> tuple[Any, nnx.State]:
    """`fn` on consecutive groups of `group_size` images, each with its own BN statistics."""
    n = images.shape[0]
    if group_size < 1 or n % group_size:
        raise ValueError(f"BatchNorm group size {group_size} must divide the per-device batch {n}")
    groups = images.reshape(n // group_size, group_size, *images.shape[1:])
    outputs, new_stats = jax.vmap(lambda group: apply_global(graphdef, params, stats, group, fn))(
        groups)
    outputs = jax.tree.map(lambda out: out.reshape(n, *out.shape[2:]), outputs)
    # Every group's running-average update, averaged: the same on every device.
    new_stats = jax.tree.map(lambda s: pmean(s.mean(0), axis_name), new_stats)
    return outputs, new_stats


def shuffle_order(key: jax.Array, total: int) -> jax.Array:
    """The global batch's shuffled order: position j holds example `order[j]`."""
    return jax.random.permutation(key, total)


def apply_shuffled(graphdef: nnx.GraphDef, params: nnx.State, stats: nnx.State,
                   images: jax.Array, fn: Call, group_size: int, key: jax.Array,
                   axis_name: str = DATA_AXIS) -> tuple[Any, nnx.State]:
    """`fn` on the global batch shuffled by `shuffle_order(key, N)`, in groups of `group_size`
    consecutive shuffled positions; outputs come back in this device's own order."""
    n = images.shape[0]
    everything = all_gather(images, axis_name)
    order = shuffle_order(key, everything.shape[0])
    first = lax.axis_index(axis_name) * n
    outputs, new_stats = apply_in_groups(
        graphdef, params, stats, take_rows(everything, lax.dynamic_slice_in_dim(order, first, n)),
        fn, group_size, axis_name)
    # Gathered in shuffled order, then each device picks its own examples' rows.
    own = first + jnp.arange(n)
    outputs = jax.tree.map(lambda out: rows_of_examples(all_gather(out, axis_name), order, own),
                           outputs)
    return outputs, new_stats


def take_rows(values: jax.Array, rows: jax.Array) -> jax.Array:
    """`values[rows]`: a gather on CPU/GPU; on TPU a one-hot matmul, which its compiler costs
    (a gather it does not) and which is exact (precision HIGHEST splits float32 into bf16 parts
    that multiply 1 and 0 exactly)."""
    return lax.platform_dependent(values, rows, tpu=take_rows_tpu, default=take_rows_gather)


def take_rows_gather(values: jax.Array, rows: jax.Array) -> jax.Array:
    return values[rows]


def take_rows_tpu(values: jax.Array, rows: jax.Array) -> jax.Array:
    return _one_hot_rows(rows[:, None] == jnp.arange(values.shape[0]), values)


def rows_of_examples(shuffled: jax.Array, order: jax.Array, examples: jax.Array) -> jax.Array:
    """The rows of `examples` from `shuffled`, whose row j holds example `order[j]`: through the
    inverse permutation on CPU/GPU, by one-hot matmul on TPU (no sort, no gather)."""
    return lax.platform_dependent(shuffled, order, examples, tpu=rows_of_examples_tpu,
                                  default=rows_of_examples_gather)


def rows_of_examples_gather(shuffled, order, examples):
    return shuffled[jnp.argsort(order)[examples]]


def rows_of_examples_tpu(shuffled, order, examples):
    return _one_hot_rows(examples[:, None] == order, shuffled)


def _one_hot_rows(hits: jax.Array, values: jax.Array) -> jax.Array:
    """Row k of the result is the row of `values` that `hits[k]` (one True) marks."""
    return jnp.einsum("kn,n...->k...", hits.astype(values.dtype), values,
                      precision=lax.Precision.HIGHEST)
