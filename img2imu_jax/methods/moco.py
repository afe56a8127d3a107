"""MoCo (the paper's method): InfoNCE of queries against keys from a momentum encoder and a
queue of earlier keys; every device's keys enter the queue.

BatchNorm. Every negative comes from the queue (earlier batches) and only the positive from
the current batch, so if queries and keys were normalised with the same batch's statistics,
that batch's signature would single out the positive: a shortcut, which MoCo's authors answer
with Shuffle BN (facebookresearch/moco issue 46: "SyncBN is not sufficient in the case of
MoCo"). With `moco.shuffle_bn` (the default) the key encoder runs the global batch in a random
order shared by every device, in ghost groups of `moco.bn_group_size` consecutive shuffled
examples, each group with its own statistics (`shuffle_bn.apply_shuffled`); on several devices
this is MoCo's cross-device shuffle, on one device the same groups. `shuffle_bn=False` gives
the key encoder global BN, the step before Shuffle BN existed, for the ablation.

`moco.bn_group_size` defaults to 32: MoCo's own BN batch (256 images over 8 GPUs), and the
paper's batch of 256 makes 8 groups. A group larger than the per-device batch is clipped to it;
one group over the whole batch (one device, batch ≤ 32) shuffles nothing and logs a warning.

`moco.query_bn` is what the query encoder uses: 'global' (BN over the global batch, as the
rest of the project; the default) or 'groups' (ghost groups of `bn_group_size` consecutive
unshuffled examples, MoCo's per-GPU BN); benchmarks/RESULTS.md (shuffle_bn.py) has the
measurement behind the default.
"""

from __future__ import annotations

import logging

import jax
import jax.numpy as jnp
from flax import nnx

from img2imu_jax import gradcache, losses
from img2imu_jax.shuffle_bn import apply_global, apply_in_groups, apply_shuffled
from img2imu_jax.methods import Method
from img2imu_jax.parallel import DATA_AXIS


log = logging.getLogger(__name__)


def _project(net: nnx.Module, images: jax.Array) -> jax.Array:
    return net(images)[1]


class MoCo(Method):
    progress = (("contrastive_top1", "top-1"),)
    supports_grad_chunks = True

    def __init__(self, config):
        super().__init__(config)
        # The same network with per-call BatchNorm statistics, for the ghost groups.
        self.grouped_graphdef = nnx.graphdef(
            nnx.eval_shape(lambda: self.build(bn_axis_name=None)))

    def init_extra(self, model):
        config = self.config
        queue = jax.random.normal(jax.random.key(config.seed + 1),
                                  (config.moco.queue_size, config.model.out_features))
        return {"key_model": jax.tree.map(jnp.copy, nnx.state(model)),
                "queue": losses.l2_normalize(queue), "queue_ptr": jnp.zeros((), jnp.int32)}

    def group_size(self, per_device_batch: int) -> int:
        return min(self.config.moco.bn_group_size, per_device_batch)

    def loss(self, params, batch_stats, view_a, view_b, extra, key):
        keys, new_key_stats = self._keys(view_b, extra, key)
        queries, stats = self._queries(params, batch_stats, view_a)
        loss, top1 = losses.info_nce(queries, keys, extra["queue"], self.config.temperature)
        return loss, {"contrastive_top1": top1}, (keys, new_key_stats), stats

    def chunked_value_and_grad(self, params, batch_stats, view_a, view_b, extra, key, chunks):
        # The keys carry no gradient: only the query encoder runs in chunks.
        keys, new_key_stats = self._keys(view_b, extra, key)
        (loss, top1, stats), grads = gradcache.value_and_grad(
            self._queries, lambda q: losses.info_nce(q, keys, extra["queue"],
                                                     self.config.temperature),
            params, batch_stats, view_a, chunks)
        return (loss, {"contrastive_top1": top1}, (keys, new_key_stats), stats), grads

    def _keys(self, view_b, extra, key):
        """Keys from the momentum encoder, with Shuffle BN unless switched off; no gradient."""
        moco = self.config.moco
        groups = self.group_size(view_b.shape[0])
        if moco.shuffle_bn and jax.lax.axis_size(DATA_AXIS) == 1 and groups == view_b.shape[0]:
            log.warning("Shuffle BN has a single group of %d, the whole batch, so it changes no "
                        "statistic; set moco.bn_group_size below the per-device batch", groups)
        key_params, key_stats = nnx.split_state(extra["key_model"], nnx.Param, nnx.BatchStat)
        if moco.shuffle_bn:
            keys, new_key_stats = apply_shuffled(self.grouped_graphdef, key_params, key_stats,
                                                 view_b, _project, groups, key, DATA_AXIS)
        else:
            keys, new_key_stats = apply_global(self.graphdef, key_params, key_stats, view_b,
                                               _project)
        return jax.lax.stop_gradient(keys), new_key_stats

    def _queries(self, params, batch_stats, view_a):
        if self.config.moco.query_bn == "groups":
            return apply_in_groups(self.grouped_graphdef, params, batch_stats, view_a, _project,
                                   self.group_size(view_a.shape[0]), DATA_AXIS)
        return apply_global(self.graphdef, params, batch_stats, view_a, _project)

    def after_update(self, extra, params, aux):
        keys, key_stats = aux
        m = self.config.moco.momentum
        key_params = nnx.split_state(extra["key_model"], nnx.Param, nnx.BatchStat)[0]
        key_params = jax.tree.map(lambda k, q: m * k + (1 - m) * q, key_params, params)
        queue, queue_ptr = losses.enqueue(extra["queue"], extra["queue_ptr"], keys,
                                          axis_name=DATA_AXIS)
        return {"key_model": nnx.merge_state(key_params, key_stats), "queue": queue,
                "queue_ptr": queue_ptr}


METHOD = MoCo
