"""ResNet encoders in Flax NNX, laid out like torchvision's so counts and weights line up.

The layout is torchvision's ResNet v1.5 without `fc`: a 7×7/2 stem, a 3×3/2 max-pool, four
stages, and global average pooling. Padding is explicit (torchvision's, not XLA's 'SAME', which
pads stride-2 layers asymmetrically), so a ported torchvision checkpoint computes the same
function. Attribute names follow torchvision (`conv1`, `bn1`, `layer1`…`layer4`, `downsample`)
so a weight converter is a rename and a transpose.

Batch statistics are global when the model runs inside `jax.shard_map` with `bn_axis_name`
set to the mesh axis: every BatchNorm then averages its moments over that axis (SimCLR's
"global BN"). Under plain `jax.jit` with sharded inputs leave `bn_axis_name` None (a name with
no enclosing `shard_map` is an unbound-axis error): XLA computes full-batch statistics itself.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from flax import nnx

from img2imu_jax.models.batchnorm import BatchNorm

# torchvision's `kaiming_normal_(mode='fan_out', nonlinearity='relu')`: untruncated, gain √2.
CONV_INIT = nnx.initializers.variance_scaling(2.0, "fan_out", "normal")

STAGE_SIZES = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}


class _Layers:
    """Conv and BatchNorm factories that carry the dtype policy and BN settings into blocks.

    BatchNorm (`models.batchnorm`) computes its moments, running statistics and normalisation in
    float32 and saves only its compute-dtype input for the backward.
    """

    def __init__(self, *, dtype, param_dtype, bn_axis_name, bn_momentum, rngs):
        self.conv = functools.partial(_conv, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.bn = functools.partial(
            BatchNorm,
            momentum=bn_momentum,
            epsilon=1e-5,
            dtype=dtype,
            param_dtype=param_dtype,
            axis_name=bn_axis_name,
            rngs=rngs,
        )


def _conv(
    in_features: int, out_features: int, kernel: int, stride: int = 1, **kw
) -> nnx.Conv:
    """A bias-free conv with torchvision's symmetric padding of `kernel // 2`."""
    pad = kernel // 2
    return nnx.Conv(
        in_features,
        out_features,
        (kernel, kernel),
        strides=(stride, stride),
        padding=((pad, pad), (pad, pad)),
        use_bias=False,
        kernel_init=CONV_INIT,
        **kw,
    )


def _downsample(layers: _Layers, in_features: int, out_features: int, stride: int):
    """The 1×1 projection shortcut, or None when the identity already fits."""
    if stride == 1 and in_features == out_features:
        return None
    return nnx.Sequential(
        layers.conv(in_features, out_features, 1, stride), layers.bn(out_features)
    )


class BasicBlock(nnx.Module):
    """Two 3×3 convs with a residual connection (ResNet-18/34)."""

    expansion = 1

    def __init__(self, in_features: int, planes: int, stride: int, layers: _Layers):
        self.conv1 = layers.conv(in_features, planes, 3, stride)
        self.bn1 = layers.bn(planes)
        self.conv2 = layers.conv(planes, planes, 3)
        self.bn2 = layers.bn(planes)
        self.downsample = _downsample(layers, in_features, planes, stride)

    def __call__(self, x: jax.Array) -> jax.Array:
        y = nnx.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        shortcut = x if self.downsample is None else self.downsample(x)
        return nnx.relu(y + shortcut)


class Bottleneck(nnx.Module):
    """1×1 reduce, 3×3, 1×1 expand ×4 (ResNet-50/101); the stride sits on the 3×3 (v1.5)."""

    expansion = 4

    def __init__(self, in_features: int, planes: int, stride: int, layers: _Layers):
        out_features = planes * self.expansion
        self.conv1 = layers.conv(in_features, planes, 1)
        self.bn1 = layers.bn(planes)
        self.conv2 = layers.conv(planes, planes, 3, stride)
        self.bn2 = layers.bn(planes)
        self.conv3 = layers.conv(planes, out_features, 1)
        self.bn3 = layers.bn(out_features)
        self.downsample = _downsample(layers, in_features, out_features, stride)

    def __call__(self, x: jax.Array) -> jax.Array:
        y = nnx.relu(self.bn1(self.conv1(x)))
        y = nnx.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        shortcut = x if self.downsample is None else self.downsample(x)
        return nnx.relu(y + shortcut)


class ResNet(nnx.Module):
    """ResNet-18/34/50/101 trunk: NHWC images `[B, H, W, 3]` → pooled features `[B, features]`.

    `dtype` is the compute dtype (activations, conv inputs); parameters are stored in
    `param_dtype` and BatchNorm statistics are always float32 (NNX computes moments in at least
    float32). The output is in `dtype`. Train/eval mode is NNX's `model.train()` /
    `model.eval()`, and a new model starts in train mode (NNX's BatchNorm default). The running
    variance tracks the biased batch variance (Flax), where torchvision tracks the unbiased one.
    """

    def __init__(
        self,
        depth: int,
        *,
        width: int = 64,
        dtype=jnp.float32,
        param_dtype=jnp.float32,
        bn_axis_name: str | None = None,
        bn_momentum: float = 0.9,
        rngs: nnx.Rngs,
    ):
        if depth not in STAGE_SIZES:
            raise ValueError(f"ResNet depth must be one of {sorted(STAGE_SIZES)}; got {depth}")
        if width < 1:
            raise ValueError(f"ResNet width must be >= 1; got {width}")
        block = BasicBlock if depth < 50 else Bottleneck
        layers = _Layers(
            dtype=dtype,
            param_dtype=param_dtype,
            bn_axis_name=bn_axis_name,
            bn_momentum=bn_momentum,
            rngs=rngs,
        )
        self.conv1 = layers.conv(3, width, 7, 2)
        self.bn1 = layers.bn(width)
        in_features = width
        stages = []
        for index, blocks in enumerate(STAGE_SIZES[depth]):
            planes = width * 2**index
            stage = []
            for b in range(blocks):
                stride = 2 if index > 0 and b == 0 else 1
                stage.append(block(in_features, planes, stride, layers))
                in_features = planes * block.expansion
            stages.append(nnx.List(stage))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.depth = depth
        self.features = in_features

    def __call__(self, x: jax.Array) -> jax.Array:
        x = stem_max_pool(nnx.relu(self.bn1(self.conv1(x))))
        for stage in (self.layer1, self.layer2, self.layer3, self.layer4):
            for block in stage:
                x = block(x)
        return x.mean(axis=(1, 2))


def stem_max_pool(x: jax.Array) -> jax.Array:
    """torchvision's 3×3/2 max pool with a one-pixel border, for inputs ≥ 0 (after a ReLU).

    On TPU the border is the pooling window's own padding: an explicit pad there writes a
    whole padded copy of the stem's activations, which the TPU compiler costs at 1.1 ms per
    256 images of 96 × 128 on v5e (2.5 ms in the ghost-BN groups of MoCo's key encoder, whose
    layout it also spoiled); the window-padded pool has no such copy (benchmarks/RESULTS.md).
    Elsewhere the border is an explicit zero pad,
    which equals −∞ padding for inputs ≥ 0 and keeps every tensor finite, as int8 calibration
    needs (with −∞ the LiteRT converter gave the stem a quantisation scale of 1e36).
    """
    return jax.lax.platform_dependent(x, tpu=max_pool_window_padded, default=max_pool_zero_padded)


def max_pool_window_padded(x: jax.Array) -> jax.Array:
    return nnx.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))


def max_pool_zero_padded(x: jax.Array) -> jax.Array:
    return nnx.max_pool(jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0))), (3, 3), strides=(2, 2))
