"""CPC (1D), after Haresamudram et al.'s CPC for HAR (harkash/contrastive-predictive-coding-
for-har `model.py`): the 1D encoder's per-step features are the latents z, a GRU context
network summarises them causally, and linear predictions W_k c_t of the latents k = 1 … K
steps after a random step t are scored by InfoNCE against the other examples' latents at the
same step (`losses.cpc_info_nce`, negatives from the global batch).

As the reference: one random t per batch (shared by every device, so the negatives line
up), drawn so that all K targets exist; a unidirectional GRU of `cpc_1d.context_layers`
layers (2) and `cpc_1d.context_features` units (256); one bias-carrying Linear W_k per step;
K = `cpc_1d.steps` (28, the reference's default). The reference's 0.2 dropout between GRU
layers is left out. Running the GRU over the whole window and reading c_t equals the
reference's run over z_1 … z_t, since the GRU is causal.

The latents are `SensorCNN.frames`, the convolution blocks' output (T − 45 steps of 96
features): the reference's encoder is also convolutions only. CPC's objective therefore
never reaches the encoder's fully connected layer, which stays at its initialisation; the
downstream features are that layer's output over the max-pooled trained frames. The
context network and predictors are `model/head` in the checkpoint and stay behind when the
encoder is fine-tuned (the reference's classifier reads the GRU instead).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from img2imu_jax import losses
from img2imu_jax.methods import compute_dtype
from img2imu_jax.methods._sensor import SensorMethod, dropout_key
from img2imu_jax.models import ContrastiveModel, build_encoder
from img2imu_jax.parallel import DATA_AXIS
from img2imu_jax.shuffle_bn import apply_global


class ContextPredictor(nnx.Module):
    """GRU layers over latents `[n, L, d]` → contexts `[n, L, h]`; `predict(c)` → `[K, n, d]`."""

    def __init__(self, latent_features: int, *, context_features: int, layers: int, steps: int,
                 dtype, rngs: nnx.Rngs):
        sizes = [latent_features] + [context_features] * layers
        self.context = nnx.List([
            nnx.RNN(nnx.GRUCell(fan_in, fan_out, dtype=dtype, rngs=rngs), rngs=False)
            for fan_in, fan_out in zip(sizes[:-1], sizes[1:])])
        self.predictors = nnx.List([nnx.Linear(context_features, latent_features, dtype=dtype,
                                               rngs=rngs) for _ in range(steps)])

    def __call__(self, latents: jax.Array) -> jax.Array:
        for layer in self.context:  # GRU carries start at zero, as torch's GRU
            carry = jnp.zeros((latents.shape[0], layer.cell.hidden_features), latents.dtype)
            latents = layer(latents, initial_carry=carry)
        return latents

    def predict(self, context: jax.Array) -> jax.Array:
        return jnp.stack([predictor(context) for predictor in self.predictors])


def future_latents(latents: jax.Array, t: jax.Array, steps: int) -> jax.Array:
    """`[steps, n, d]`: entry k is every example's latent k + 1 steps after step t."""
    return jax.lax.dynamic_slice_in_dim(latents, t + 1, steps, axis=1).swapaxes(0, 1)


class CPC1D(SensorMethod):
    progress = (("cpc_accuracy", "accuracy"),)

    def build(self, *, bn_axis_name=DATA_AXIS):
        model, cpc = self.config.model, self.config.cpc_1d
        dtype, rngs = compute_dtype(model.dtype), nnx.Rngs(self.config.seed)
        encoder = build_encoder(model.encoder, depth=model.depth, width=model.width,
                                fc_features=model.fc_features, dtype=dtype,
                                bn_axis_name=bn_axis_name, rngs=rngs)
        head = ContextPredictor(encoder.frame_features, context_features=cpc.context_features,
                                layers=cpc.context_layers, steps=cpc.steps, dtype=dtype,
                                rngs=rngs)
        return ContrastiveModel(encoder, head)

    def views(self, key, windows, indices):
        """CPC reads the windows as they are; there is no second view."""
        return windows, windows

    def loss(self, params, batch_stats, view_a, view_b, extra, key):
        steps = self.config.cpc_1d.steps
        drop = dropout_key(key)

        def score(net, windows):
            latents = net.encoder.frames(windows, dropout_key=drop).astype(jnp.float32)
            length = latents.shape[1]
            if length <= steps:
                raise ValueError(f"CPC predicts {steps} steps ahead but a window gives only "
                                 f"{length} latent steps; lower cpc_1d.steps or lengthen "
                                 "data.seconds")
            t = jax.random.randint(key, (), 0, length - steps)  # the same on every device
            context = jax.lax.dynamic_index_in_dim(net.head(latents), t, axis=1, keepdims=False)
            return losses.cpc_info_nce(net.head.predict(context),
                                       future_latents(latents, t, steps), axis_name=DATA_AXIS)

        (loss, accuracy), stats = apply_global(self.graphdef, params, batch_stats, view_a, score)
        return loss, {"cpc_accuracy": accuracy}, None, stats


METHOD = CPC1D
