"""The 1D sensor encoder of the sensor-side baselines: three convolution blocks, global max
pooling and a fully connected layer, on raw windows `[batch, time, 3]`.

The convolution stack is the one Saeed et al.'s multi-task network (TPN) and Tang et al.'s
SimCLR for HAR share, as in Tang et al.'s public TensorFlow code
(iantangc/ContrastiveLearningHAR `simclr_models.create_base_model`), which we follow:

- Conv1D 32 filters, kernel 24 → ReLU → Dropout 0.1
- Conv1D 64 filters, kernel 16 → ReLU → Dropout 0.1
- Conv1D 96 filters, kernel 8 → ReLU → Dropout 0.1
- global max pooling over time

Keras defaults there, kept here: stride 1, 'valid' padding (no padding, so a window of T
samples gives T − 45 frames and the receptive field of one frame is 24 + 16 + 8 − 2 = 46
samples), biases, Glorot-uniform kernels and zero biases, no batch normalisation. Tang's code
adds an L2 penalty of 1e-4 on the conv kernels; the SimCLR (1D) recipe has it as weight decay.

The fully connected layer: Tang's code puts Dense(1024) + ReLU after the pooled features
when it fine-tunes and Saeed's task heads Dense(256) + ReLU; neither makes it part of the
shared encoder, and the paper that copies this encoder says only "with an FC layer". It is
Dense(`fc_features`, 256 by default) + ReLU after the pooling, and `features` is its width.

`frames(x)` is the per-time-step output of the convolutions, `[batch, T − 45, 96]`, which
CPC encodes into its sequence of latents. Dropout is active only when a `dropout_key` is
given (pre-training); without one (feature extraction, evaluation) the encoder is
deterministic. It holds no state besides parameters, so `nnx.state(encoder)` is its weights.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

FILTERS = (32, 64, 96)
KERNELS = (24, 16, 8)
DROPOUT = 0.1
CHANNELS = 3  # accelerometer x, y, z
# Keras' Conv1D/Dense defaults (the reference code is Keras).
KERAS_KERNEL_INIT = nnx.initializers.glorot_uniform()


def receptive_field(kernels: tuple[int, ...] = KERNELS) -> int:
    """Input samples one output frame sees: stride-1 'valid' convolutions add `k − 1` each."""
    return 1 + sum(k - 1 for k in kernels)


class SensorCNN(nnx.Module):
    """Conv blocks (32/64/96 filters, kernels 24/16/8) → global max pool → Dense + ReLU.

    Input float32 `[batch, time, 3]` (normalised windows, time ≥ 46); output
    `[batch, fc_features]` in the compute `dtype`.
    """

    def __init__(self, *, fc_features: int = 256, in_channels: int = CHANNELS,
                 dtype=jnp.float32, param_dtype=jnp.float32, rngs: nnx.Rngs):
        sizes = (in_channels,) + FILTERS
        self.convs = nnx.List([
            nnx.Conv(fan_in, fan_out, (kernel,), padding="VALID", kernel_init=KERAS_KERNEL_INIT,
                     dtype=dtype, param_dtype=param_dtype, rngs=rngs)
            for fan_in, fan_out, kernel in zip(sizes[:-1], sizes[1:], KERNELS)
        ])
        self.fc = nnx.Linear(FILTERS[-1], fc_features, kernel_init=KERAS_KERNEL_INIT,
                             dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.dropout = nnx.Dropout(DROPOUT)
        self.features = fc_features
        self.frame_features = FILTERS[-1]
        self.receptive_field = receptive_field()

    def frames(self, x: jax.Array, *, dropout_key: jax.Array | None = None) -> jax.Array:
        """`[batch, time − 45, 96]`: the convolution blocks' output at every time step."""
        if x.ndim != 3 or x.shape[-1] != self.convs[0].in_features:
            raise ValueError(f"expected windows [batch, time, {self.convs[0].in_features}]; "
                             f"got shape {x.shape}")
        if x.shape[1] < self.receptive_field:
            raise ValueError(f"windows of {x.shape[1]} samples are shorter than the encoder's "
                             f"receptive field of {self.receptive_field}")
        for i, conv in enumerate(self.convs):
            x = nnx.relu(conv(x))
            x = self.dropout(x, deterministic=dropout_key is None,
                             rngs=None if dropout_key is None
                             else jax.random.fold_in(dropout_key, i))
        return x

    def __call__(self, x: jax.Array, *, dropout_key: jax.Array | None = None) -> jax.Array:
        pooled = jnp.max(self.frames(x, dropout_key=dropout_key), axis=1)
        return nnx.relu(self.fc(pooled))


def window_features(encoder: SensorCNN, windows: jax.Array) -> jax.Array:
    """Deterministic float32 features of normalised windows: the 1D counterpart of
    `classifier.Features`, hashable so `classifier.in_batches` compiles it once."""
    return encoder(windows).astype(jnp.float32)
