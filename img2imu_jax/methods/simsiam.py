"""SimSiam (Chen & He 2021): no negatives, no momentum encoder; a predictor and a stop-gradient.

Both views go through the encoder and projection head f, the predictor h maps each projection
to a prediction, and the loss is the symmetric negative cosine
`D(h(f(a)), sg(f(b))) / 2 + D(h(f(b)), sg(f(a))) / 2` (`losses.negative_cosine`). As in the
official code (facebookresearch/simsiam `builder.py`, `main_simsiam.py`), the two views are
separate forward passes and BatchNorm is synchronised over every device (global BN here).
`configs/simsiam.py` holds its recipe; its augmentations are MoCo v2's set, which SimSiam uses.

With no negatives there is no contrastive top-1 to track. The metric is SimSiam's collapse
indicator (its §4.1, Fig. 2): `output_std`, the per-channel standard deviation over the global
batch of the L2-normalised projections, averaged over channels and multiplied by √d. About 1
means the outputs spread over the sphere like a Gaussian would; 0 means they collapsed to a
point. It costs two means over the batch.

Not implemented: the official `--fix-pred-lr` (a constant learning rate for the predictor).
"""

from __future__ import annotations

import jax.numpy as jnp

from img2imu_jax import losses
from img2imu_jax.methods import Method, build
from img2imu_jax.parallel import DATA_AXIS, pmean
from img2imu_jax.shuffle_bn import apply_global


def output_std(z: jnp.ndarray, axis_name: str = DATA_AXIS) -> jnp.ndarray:
    """√d × the mean over channels of the global batch's std of the L2-normalised `z`."""
    unit = losses.l2_normalize(z)
    mean = pmean(unit.mean(0), axis_name)
    variance = pmean(jnp.square(unit).mean(0), axis_name) - jnp.square(mean)
    return jnp.mean(jnp.sqrt(jnp.maximum(variance, 0.0))) * jnp.sqrt(unit.shape[1])


class SimSiam(Method):
    progress = (("output_std", "output std"),)

    def build(self, *, bn_axis_name=DATA_AXIS):
        hidden = self.config.simsiam.predictor_features or self.config.model.out_features // 4
        return build(self.config, bn_axis_name=bn_axis_name, predictor_features=hidden)

    def loss(self, params, batch_stats, view_a, view_b, extra, key):
        def project_and_predict(net, x):
            _, z = net(x)
            return z, net.predictor(z)

        (z_a, p_a), stats = apply_global(self.graphdef, params, batch_stats, view_a,
                                         project_and_predict)
        (z_b, p_b), stats = apply_global(self.graphdef, params, stats, view_b,
                                         project_and_predict)
        loss = 0.5 * losses.negative_cosine(p_a, z_b) + 0.5 * losses.negative_cosine(p_b, z_a)
        return loss, {"output_std": output_std(z_a)}, None, stats


METHOD = SimSiam
