"""SimCLR: NT-Xent over both views of the global batch; negatives come from every device.

Both views go through the network as one batch of 2n per device with global BatchNorm, as
SimCLR's `global_bn=True`: every view is normalised by the same statistics, so no batch
signature separates positives from negatives (all of them are in the current batch).
"""

from __future__ import annotations

import jax.numpy as jnp

from img2imu_jax import gradcache, losses
from img2imu_jax.shuffle_bn import apply_global
from img2imu_jax.methods import Method
from img2imu_jax.parallel import DATA_AXIS


class SimCLR(Method):
    progress = (("contrastive_top1", "top-1"),)
    supports_grad_chunks = True

    def loss(self, params, batch_stats, view_a, view_b, extra, key):
        (z_a, z_b), stats = self._embed(params, batch_stats, (view_a, view_b))
        loss, top1 = self._objective((z_a, z_b))
        return loss, {"contrastive_top1": top1}, None, stats

    def chunked_value_and_grad(self, params, batch_stats, view_a, view_b, extra, key, chunks):
        (loss, top1, stats), grads = gradcache.value_and_grad(
            self._embed, self._objective, params, batch_stats, (view_a, view_b), chunks)
        return (loss, {"contrastive_top1": top1}, None, stats), grads

    def _embed(self, params, batch_stats, views):
        """Both views of the same images as one BatchNorm batch (a chunk keeps its pairs)."""
        view_a, view_b = views
        n = view_a.shape[0]
        z, stats = apply_global(self.graphdef, params, batch_stats,
                                jnp.concatenate([view_a, view_b]), lambda net, x: net(x)[1])
        return (z[:n], z[n:]), stats

    def _objective(self, z):
        return losses.nt_xent(*z, self.config.temperature, axis_name=DATA_AXIS)


METHOD = SimCLR
