"""The contrastive model: an encoder and a projection head, built from plain config values.

Encoders by name (`config.model.encoder`): 'resnet' (the 2D ResNet on spectrogram images,
`depth` and `width`) or 'sensor_cnn' (the 1D CNN on raw windows `[batch, time, 3]` of the
sensor baselines, `fc_features` wide); `build_encoder` makes either, so pre-training and
fine-tuning build the same one from the same config.

`ContrastiveModel`'s attribute names are the checkpoint layout: `nnx.state(model)` has exactly
the top-level keys `encoder` and `head`, saved as `model/encoder` and `model/head`. The
fine-tune loop restores `model/encoder` alone, so renaming either attribute breaks every
existing checkpoint. Methods with a predictor (SimSiam) add a third key, `predictor`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from img2imu_jax.models.heads import PRESETS, Predictor, ProjectionHead, projection_head
from img2imu_jax.models.resnet import ResNet
from img2imu_jax.models.sensor_cnn import SensorCNN


__all__ = [
    "PRESETS",
    "ContrastiveModel",
    "Predictor",
    "ProjectionHead",
    "ResNet",
    "SensorCNN",
    "ENCODERS",
    "build_encoder",
    "build_model",
    "projection_head",
]


class ContrastiveModel(nnx.Module):
    """Encoder then head; both outputs come back float32 whatever the compute dtype.

    The cast sits here so the contrastive loss (logits scaled by 1/τ) and the linear probe never
    see bfloat16.
    """

    def __init__(self, encoder: ResNet | SensorCNN, head: ProjectionHead,
                 predictor: Predictor | None = None):
        self.encoder = encoder
        self.head = head
        if predictor is not None:  # only then does the state have a `predictor` key
            self.predictor = predictor

    def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        features = self.encoder(x)
        projections = self.head(features)
        return features.astype(jnp.float32), projections.astype(jnp.float32)


ENCODERS = ("resnet", "sensor_cnn")


def build_encoder(
    encoder: str = "resnet",
    *,
    depth: int = 18,
    width: int = 64,
    fc_features: int = 256,
    dtype=jnp.float32,
    bn_axis_name: str | None = None,
    bn_momentum: float = 0.9,
    rngs: nnx.Rngs,
) -> ResNet | SensorCNN:
    """The encoder `encoder` names: a ResNet of `depth` and `width`, or the 1D `SensorCNN`
    with an FC layer of `fc_features` (which has no BatchNorm, so ignores the BN settings)."""
    if encoder == "resnet":
        return ResNet(depth, width=width, dtype=jnp.dtype(dtype), bn_axis_name=bn_axis_name,
                      bn_momentum=bn_momentum, rngs=rngs)
    if encoder == "sensor_cnn":
        return SensorCNN(fc_features=fc_features, dtype=jnp.dtype(dtype), rngs=rngs)
    raise ValueError(f"model encoder must be one of {ENCODERS}; got {encoder!r}")


def build_model(
    *,
    depth: int,
    width: int = 64,
    encoder: str = "resnet",
    fc_features: int = 256,
    head: str = "mocov2",
    head_layers: int = 2,
    hidden_features: int | None = None,
    out_features: int = 64,
    dtype=jnp.float32,
    bn_axis_name: str | None = None,
    bn_momentum: float = 0.9,
    predictor_features: int = 0,
    rngs: nnx.Rngs,
) -> ContrastiveModel:
    """A `ContrastiveModel` from config values; parameters are always float32.

    `head` is 'simclr' (BN MLP) or 'mocov2' (plain MLP). `hidden_features` of None or 0 means
    the encoder's feature width. `dtype` may be a name such as 'bfloat16'. A
    `predictor_features` > 0 adds SimSiam's predictor with that bottleneck width.
    """
    if head not in PRESETS:
        raise ValueError(f"model head must be one of {sorted(PRESETS)}; got {head!r}")
    dtype = jnp.dtype(dtype)
    encoder = build_encoder(encoder, depth=depth, width=width, fc_features=fc_features,
                            dtype=dtype, bn_axis_name=bn_axis_name, bn_momentum=bn_momentum,
                            rngs=rngs)
    projection = projection_head(
        head,
        encoder.features,
        out_features=out_features,
        hidden_features=hidden_features or None,
        layers=head_layers,
        dtype=dtype,
        bn_axis_name=bn_axis_name,
        bn_momentum=bn_momentum,
        rngs=rngs,
    )
    predictor = None
    if predictor_features:
        predictor = Predictor(out_features, hidden_features=predictor_features, dtype=dtype,
                              bn_axis_name=bn_axis_name, bn_momentum=bn_momentum, rngs=rngs)
    return ContrastiveModel(encoder, projection, predictor)
