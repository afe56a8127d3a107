"""Multi-task self-supervision (1D), Saeed et al. 2019: one binary head per transformation
recognising whether it was applied.

Each window and each of its transformations (`config.multitask_1d.transforms`, all eight of
`sensor_transforms` by default, as Saeed et al.'s eight tasks) go through the shared 1D
encoder; head t sees the original windows (label 0) and the windows transformed by t
(label 1), and the loss is the sum over tasks of each head's mean binary cross-entropy
(`losses.binary_cross_entropies`; Saeed et al. weight every task equally). A head is
Dense(`multitask_1d.hidden_features`, 256 as Saeed et al.'s task layers) + ReLU then
Dense(1), with Keras' initialisation as the encoder; the heads are `model/head` in the
checkpoint and stay behind when the encoder is fine-tuned.

Every window is encoded once untransformed and once per task: a step costs (tasks + 1) ×
the batch in forward passes. `task_accuracy` is the fraction of all 2 × tasks × n decisions
that are right.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from img2imu_jax import losses
from img2imu_jax.methods import compute_dtype
from img2imu_jax.methods._sensor import SensorMethod, dropout_key
from img2imu_jax.models import ContrastiveModel, build_encoder
from img2imu_jax.models.sensor_cnn import KERAS_KERNEL_INIT
from img2imu_jax.parallel import DATA_AXIS
from img2imu_jax.sensor_transforms import TRANSFORMS, batched, parse_spec
from img2imu_jax.shuffle_bn import apply_global


class TaskHeads(nnx.Module):
    """`tasks` independent heads Dense(hidden) → ReLU → Dense(1): features `[n, in]` →
    logits `[n, tasks]` (float32)."""

    def __init__(self, in_features: int, tasks: int, *, hidden_features: int, dtype,
                 rngs: nnx.Rngs):
        self.hidden = nnx.Param(KERAS_KERNEL_INIT(rngs.params(), (tasks, in_features,
                                                                  hidden_features)))
        self.hidden_bias = nnx.Param(jnp.zeros((tasks, hidden_features)))
        self.out = nnx.Param(KERAS_KERNEL_INIT(rngs.params(), (tasks, hidden_features, 1))[..., 0])
        self.out_bias = nnx.Param(jnp.zeros((tasks,)))
        self.dtype = dtype

    def __call__(self, features: jax.Array) -> jax.Array:
        x = features.astype(self.dtype)
        hidden = nnx.relu(jnp.einsum("nf,tfh->nth", x, self.hidden[...].astype(self.dtype))
                          + self.hidden_bias[...].astype(self.dtype))
        logits = jnp.einsum("nth,th->nt", hidden, self.out[...].astype(self.dtype))
        return logits.astype(jnp.float32) + self.out_bias[...]


def task_decisions(logits: jax.Array, n: int) -> tuple[jax.Array, jax.Array]:
    """From every head's logits `[(tasks + 1) · n, tasks]` on the original windows and then
    each task's transformed windows, the decisions `[2n, tasks]` each head is trained on and
    their labels: head t on the originals (0) and on the windows task t transformed (1)."""
    tasks = logits.shape[1]
    original = logits[:n]
    transformed = jnp.diagonal(logits[n:].reshape(tasks, n, tasks), axis1=0, axis2=2)
    return (jnp.concatenate([original, transformed]),
            jnp.concatenate([jnp.zeros_like(original), jnp.ones_like(transformed)]))


class MultiTask1D(SensorMethod):
    progress = (("task_accuracy", "accuracy"),)

    def __init__(self, config):
        self.tasks = parse_spec(config.multitask_1d.transforms)
        super().__init__(config)

    def build(self, *, bn_axis_name=DATA_AXIS):
        model, dtype = self.config.model, compute_dtype(self.config.model.dtype)
        rngs = nnx.Rngs(self.config.seed)
        encoder = build_encoder(model.encoder, depth=model.depth, width=model.width,
                                fc_features=model.fc_features, dtype=dtype,
                                bn_axis_name=bn_axis_name, rngs=rngs)
        heads = TaskHeads(encoder.features, len(self.tasks),
                          hidden_features=self.config.multitask_1d.hidden_features,
                          dtype=dtype, rngs=rngs)
        return ContrastiveModel(encoder, heads)

    def views(self, key, windows, indices):
        """The windows themselves and `[tasks, n, time, 3]`: every window under each task."""
        transformed = [batched(TRANSFORMS[name])(jax.random.fold_in(key, t), windows, indices)
                       for t, name in enumerate(self.tasks)]
        return windows, jnp.stack(transformed)

    def loss(self, params, batch_stats, view_a, view_b, extra, key):
        tasks, n = view_b.shape[:2]
        drop = dropout_key(key)
        logits, stats = apply_global(
            self.graphdef, params, batch_stats,
            jnp.concatenate([view_a, view_b.reshape(tasks * n, *view_b.shape[2:])]),
            lambda net, x: net.head(net.encoder(x, dropout_key=drop)))
        decisions, labels = task_decisions(logits, n)
        loss = jnp.sum(losses.binary_cross_entropies(decisions, labels))
        accuracy = jnp.mean((decisions > 0) == (labels > 0))
        return loss, {"task_accuracy": accuracy}, None, stats


METHOD = MultiTask1D
