"""Projection heads: the MLP between encoder features and the contrastive loss.

Two recipes, chosen by `batch_norm`:

- SimCLR v2 (`batch_norm=True`, google-research/simclr `tf2/model.py`): every layer is a
  bias-free Linear followed by BatchNorm; hidden layers add ReLU. The output BatchNorm has a
  scale but no centre (bias), as SimCLR's final `LinearLayer(use_bias=False, use_bn=True)`
  builds `BatchNormRelu(relu=False, center=False)` (Keras keeps `scale=True`). Kernels start
  from N(0, 0.01²) as there.
- MoCo v2 (`batch_norm=False`, facebookresearch/moco `--mlp`): Linear(+bias) → ReLU → … →
  Linear(+bias), with PyTorch's default Linear initialisation since MoCo is PyTorch code.

`Predictor` is SimSiam's prediction MLP h (facebookresearch/simsiam `builder.py`), which sits
after the projection head of the online branch only.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from img2imu_jax.models.batchnorm import BatchNorm

SIMCLR_KERNEL_INIT = nnx.initializers.normal(0.01)
# PyTorch's nn.Linear default, kaiming_uniform(a=√5): U(±1/√fan_in).
TORCH_KERNEL_INIT = nnx.initializers.variance_scaling(1 / 3, "fan_in", "uniform")


def _torch_bias_init(fan_in: int):
    """PyTorch's nn.Linear bias default, U(±1/√fan_in), which needs fan_in bound in advance."""
    bound = 1 / math.sqrt(fan_in)

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


class ProjectionHead(nnx.Module):
    """`layers` Linear layers from `in_features` through `hidden_features` to `out_features`.

    Layer `i` is `linears[i]`, then `norms[i]` when `batch_norm` (`norms` is empty otherwise),
    then ReLU unless it is the last layer. The output is in the compute `dtype`.
    """

    def __init__(
        self,
        in_features: int,
        *,
        hidden_features: int,
        out_features: int = 64,
        layers: int = 2,
        batch_norm: bool,
        dtype=jnp.float32,
        param_dtype=jnp.float32,
        bn_axis_name: str | None = None,
        bn_momentum: float = 0.9,
        rngs: nnx.Rngs,
    ):
        if layers < 1:
            raise ValueError(f"a projection head needs at least 1 layer; got {layers}")
        sizes = [in_features] + [hidden_features] * (layers - 1) + [out_features]
        linears, norms = [], []
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
            linears.append(
                nnx.Linear(
                    fan_in,
                    fan_out,
                    use_bias=not batch_norm,
                    kernel_init=SIMCLR_KERNEL_INIT if batch_norm else TORCH_KERNEL_INIT,
                    bias_init=_torch_bias_init(fan_in),
                    dtype=dtype,
                    param_dtype=param_dtype,
                    rngs=rngs,
                )
            )
            if batch_norm:
                norms.append(
                    BatchNorm(
                        fan_out,
                        use_bias=len(norms) < layers - 1,
                        momentum=bn_momentum,
                        epsilon=1e-5,
                        dtype=dtype,
                        param_dtype=param_dtype,
                        axis_name=bn_axis_name,
                        rngs=rngs,
                    )
                )
        self.linears = nnx.List(linears)
        self.norms = nnx.List(norms)
        self.out_features = out_features

    def __call__(self, x: jax.Array) -> jax.Array:
        last = len(self.linears) - 1
        for i, linear in enumerate(self.linears):
            x = linear(x)
            if self.norms:
                x = self.norms[i](x)
            if i < last:
                x = nnx.relu(x)
        return x


class Predictor(nnx.Module):
    """SimSiam's predictor h: bias-free Linear → BatchNorm → ReLU → Linear(+bias), `features`
    → `hidden_features` → `features`; a bottleneck (SimSiam's 2048 → 512 → 2048) with
    PyTorch's default initialisation, as the official code."""

    def __init__(
        self,
        features: int,
        *,
        hidden_features: int,
        dtype=jnp.float32,
        param_dtype=jnp.float32,
        bn_axis_name: str | None = None,
        bn_momentum: float = 0.9,
        rngs: nnx.Rngs,
    ):
        linear = dict(kernel_init=TORCH_KERNEL_INIT, dtype=dtype, param_dtype=param_dtype,
                      rngs=rngs)
        self.reduce = nnx.Linear(features, hidden_features, use_bias=False, **linear)
        self.norm = nnx.BatchNorm(hidden_features, momentum=bn_momentum, epsilon=1e-5,
                                  dtype=dtype, param_dtype=param_dtype, axis_name=bn_axis_name,
                                  rngs=rngs)
        self.expand = nnx.Linear(hidden_features, features,
                                 bias_init=_torch_bias_init(hidden_features), **linear)

    def __call__(self, z: jax.Array) -> jax.Array:
        return self.expand(nnx.relu(self.norm(self.reduce(z))))


# kind → (BatchNorm MLP?, default layers): SimCLR v2's 3-layer BN MLP, MoCo v2's `--mlp`.
PRESETS = {"simclr": (True, 3), "mocov2": (False, 2)}


def projection_head(
    kind: str,
    in_features: int,
    *,
    out_features: int = 128,
    hidden_features: int | None = None,
    layers: int | None = None,
    **kw,
) -> ProjectionHead:
    """SimCLR's or MoCo v2's head; hidden width defaults to the encoder's (2048 for ResNet-50)."""
    if kind not in PRESETS:
        raise ValueError(f"model head must be one of {sorted(PRESETS)}; got {kind!r}")
    batch_norm, default_layers = PRESETS[kind]
    return ProjectionHead(
        in_features,
        hidden_features=hidden_features or in_features,
        out_features=out_features,
        layers=layers or default_layers,
        batch_norm=batch_norm,
        **kw,
    )
