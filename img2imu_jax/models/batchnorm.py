"""BatchNorm whose backward keeps only its (bfloat16) input: statistics and gradients in float32.

Flax's BatchNorm computes its moments from a float32 copy of the input and normalises
`x - mean` in float32, so autodiff keeps float32 activations for the backward pass: on a 224²
ResNet-50 view that is 89 of the 130 MB saved per image (XLA memory analysis, benchmarks/RESULTS.md). Here
training-mode normalisation is one `jax.custom_vjp`: the forward computes the moments and the
normalisation in float32 and returns the compute dtype; the backward recomputes `x̂` from the
saved compute-dtype input, also in float32. Eval mode (running statistics) is Flax's own code.

The gradient is exactly autodiff's of Flax's fast-variance formula (`E[x²] − E[x]²`, clipped at
0), including the per-device semantics under `shard_map(check_vma=False)`/`pmap`: the
cotangents of the global moments are averaged over `axis_name` as autodiff transposes
`pmean` (tests/test_models.py compares both).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from flax import nnx

from img2imu_jax.parallel import pmean


class BatchNorm(nnx.BatchNorm):
    """`nnx.BatchNorm` over the last (feature) axis that saves only its input for the backward.

    Parameters and running statistics stay float32; the output has the compute `dtype`.
    """

    def __call__(self, x: jax.Array, use_running_average: bool | None = None, *,
                 mask: jax.Array | None = None) -> jax.Array:
        if use_running_average is None:
            use_running_average = self.use_running_average
        if use_running_average or mask is not None or self.axis not in (-1, x.ndim - 1):
            return super().__call__(x, use_running_average, mask=mask)
        if self.dtype is not None:
            x = x.astype(self.dtype)
        features = x.shape[-1]
        scale = self.scale[...] if self.scale is not None else jnp.ones(features, jnp.float32)
        bias = self.bias[...] if self.bias is not None else jnp.zeros(features, jnp.float32)
        y, mean, var = batch_norm_train(x, scale, bias, self.axis_name, self.epsilon)
        mean, var = jax.lax.stop_gradient(mean), jax.lax.stop_gradient(var)
        self.mean[...] = self.momentum * self.mean[...] + (1 - self.momentum) * mean
        self.var[...] = self.momentum * self.var[...] + (1 - self.momentum) * var
        return y


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4))
def batch_norm_train(x, scale, bias, axis_name, epsilon):
    """`(y, batch mean, batch variance)` normalising `x` over all axes but the last.

    The moments are returned for the running statistics and carry no gradient.
    """
    return _forward(x, scale, bias, axis_name, epsilon)[0]


def _forward(x, scale, bias, axis_name, epsilon):
    axes = tuple(range(x.ndim - 1))
    xf = x.astype(jnp.float32)
    moments = pmean(jnp.stack([xf.mean(axes), jnp.square(xf).mean(axes)]), axis_name)
    mean, mean_square = moments[0], moments[1]
    raw_var = mean_square - jnp.square(mean)
    var = jnp.maximum(0.0, raw_var)
    inv_std = jax.lax.rsqrt(var + epsilon)
    mul = scale.astype(jnp.float32) * inv_std
    y = (xf * mul + (bias.astype(jnp.float32) - mean * mul)).astype(x.dtype)
    return (y, mean, var), (x, mean, inv_std, raw_var > 0, scale)


def _backward(axis_name, epsilon, residuals, cotangents):
    x, mean, inv_std, positive_var, scale = residuals
    dy = cotangents[0].astype(jnp.float32)
    axes = tuple(range(x.ndim - 1))
    count = x.size // x.shape[-1]
    xf = x.astype(jnp.float32)
    x_hat = (xf - mean) * inv_std
    scale32 = scale.astype(jnp.float32)
    d_bias = dy.sum(axes)
    d_scale = (dy * x_hat).sum(axes)
    # Cotangents of this device's view of the global moments, then pmean's transpose.
    d_var = jnp.where(positive_var, -0.5 * scale32 * d_scale * jnp.square(inv_std), 0.0)
    d_mean = -scale32 * inv_std * d_bias - 2.0 * mean * d_var
    moments = pmean(jnp.stack([d_mean, d_var]), axis_name)
    d_x = scale32 * inv_std * dy + (moments[0] + 2.0 * moments[1] * xf) / count
    return d_x.astype(x.dtype), d_scale.astype(scale.dtype), d_bias.astype(scale.dtype)


batch_norm_train.defvjp(_forward, _backward)
