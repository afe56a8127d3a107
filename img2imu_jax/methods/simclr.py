"""SimCLR: NT-Xent over both views of the global batch; negatives come from every device.

Both views go through the network as one batch of 2n per device with global BatchNorm, as
SimCLR's `global_bn=True`: every view is normalised by the same statistics, so no batch
signature separates positives from negatives (all of them are in the current batch).
"""

from __future__ import annotations

import jax.numpy as jnp

from img2imu_jax import losses
from img2imu_jax.shuffle_bn import apply_global
from img2imu_jax.methods import Method
from img2imu_jax.parallel import DATA_AXIS


class SimCLR(Method):
    progress = (("contrastive_top1", "top-1"),)

    def loss(self, params, batch_stats, view_a, view_b, extra, key):
        n = view_a.shape[0]
        z, stats = apply_global(self.graphdef, params, batch_stats,
                                jnp.concatenate([view_a, view_b]), lambda net, x: net(x)[1])
        loss, top1 = losses.nt_xent(z[:n], z[n:], self.config.temperature, axis_name=DATA_AXIS)
        return loss, {"contrastive_top1": top1}, None, stats


METHOD = SimCLR
