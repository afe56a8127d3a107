"""SimCLR (1D), Tang et al. 2020: NT-Xent between two transformed views of each raw window.

As Tang et al.'s code (iantangc/ContrastiveLearningHAR): both views come from the same chain
of signal transformations (`config.simclr_1d.transforms`, `sensor_transforms`), each view
drawing its own random parameters; the 1D encoder with a 3-layer MLP head (the recipe's
`model.head='mocov2'`, 3 layers, 256 hidden, 50 out; Tang's hidden layers are 256 and 128,
ours share one width); temperature 0.1. Negatives come from the global batch, both views in
one forward pass, as `methods/simclr.py` does for images.

The default pair is channel shuffle and permutation: the pair Haresamudram et al.'s SimCLR
code for their assessment of sensor self-supervision (which the paper's 1D baselines copy)
names as Tang et al.'s best. We could not check it against Tang et al.'s figure.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from img2imu_jax import losses
from img2imu_jax.methods._sensor import SensorMethod, dropout_key
from img2imu_jax.parallel import DATA_AXIS
from img2imu_jax.sensor_transforms import make_sensor_transform
from img2imu_jax.shuffle_bn import apply_global


class SimCLR1D(SensorMethod):
    progress = (("contrastive_top1", "top-1"),)

    def views(self, key, windows, indices):
        transform = make_sensor_transform(self.config.simclr_1d.transforms)
        return (transform(jax.random.fold_in(key, 0), windows, indices),
                transform(jax.random.fold_in(key, 1), windows, indices))

    def loss(self, params, batch_stats, view_a, view_b, extra, key):
        n = view_a.shape[0]
        drop = dropout_key(key)
        z, stats = apply_global(self.graphdef, params, batch_stats,
                                jnp.concatenate([view_a, view_b]),
                                lambda net, x: net.head(net.encoder(x, dropout_key=drop)))
        loss, top1 = losses.nt_xent(z[:n], z[n:], self.config.temperature, axis_name=DATA_AXIS)
        return loss, {"contrastive_top1": top1}, None, stats


METHOD = SimCLR1D
