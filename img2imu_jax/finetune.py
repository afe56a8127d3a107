"""Downstream evaluation: frozen-encoder features of IMU windows and the paper's linear head.

Linear evaluation never changes the encoder, so the features of every window are computed
once per (dataset, spectrogram setting) — spectrogram, ImageNet normalisation and encoder in
one jitted function, in large batches on the device — and heads are then trained on those
features alone, which costs next to nothing per fold and shot count.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from img2imu_jax.spectrogram import normalize_imagenet, spectrogram_image

# The paper's linear evaluation (v2 §IV-A): Adam, 50 epochs, batch 4, learning rate warmed
# from 1e-8 to 1e-5 over 10 epochs, then cosine to 1e-6.
LINEAR_EPOCHS, LINEAR_BATCH, LINEAR_WARMUP_EPOCHS = 50, 4, 10
LINEAR_LR, LINEAR_LR_START, LINEAR_LR_END = 1e-5, 1e-8, 1e-6


def extract_features(
    encoder: nnx.Module,
    windows: np.ndarray,
    *,
    sample_rate: float,
    nfft: int,
    noverlap: int,
    batch_size: int = 1024,
) -> np.ndarray:
    """Frozen `encoder` features `[N, features]` of accelerometer windows `[N, time, 3]`.

    The encoder runs in eval mode (BatchNorm uses its running statistics), so a window's
    features do not depend on which batch it is in.
    """
    encoder.eval()
    graphdef, state = nnx.split(encoder)

    @jax.jit
    def features(state: nnx.State, batch: jax.Array) -> jax.Array:
        images = spectrogram_image(batch, sample_rate=sample_rate, nfft=nfft, noverlap=noverlap)
        return nnx.merge(graphdef, state)(normalize_imagenet(images)).astype(jnp.float32)

    chunks = []
    for start in range(0, len(windows), batch_size):
        batch = windows[start:start + batch_size]
        padded = np.pad(batch, ((0, batch_size - len(batch)), (0, 0), (0, 0)))  # one shape
        chunks.append(np.asarray(features(state, padded))[: len(batch)])
    return np.concatenate(chunks)


def linear_schedule(steps_per_epoch: int) -> optax.Schedule:
    """The paper's head schedule: 1e-8 → 1e-5 linearly over 10 epochs, cosine to 1e-6."""
    warmup = LINEAR_WARMUP_EPOCHS * steps_per_epoch
    total = LINEAR_EPOCHS * steps_per_epoch
    return optax.join_schedules(
        [optax.linear_schedule(LINEAR_LR_START, LINEAR_LR, warmup),
         optax.cosine_decay_schedule(LINEAR_LR, total - warmup, LINEAR_LR_END / LINEAR_LR)],
        [warmup],
    )


def train_linear_head(
    features: np.ndarray,
    labels: np.ndarray,
    n_classes: int,
    *,
    seed: int,
    epochs: int = LINEAR_EPOCHS,
    batch_size: int = LINEAR_BATCH,
    schedule: optax.Schedule | None = None,
) -> tuple[jax.Array, jax.Array]:
    """A softmax linear head `(kernel, bias)` trained with Adam on fixed features.

    The whole run is one jitted `lax.scan` over epochs and shuffled minibatches.
    """
    n = len(features)
    steps = max(1, n // batch_size)
    schedule = schedule or linear_schedule(steps)
    tx = optax.adam(schedule)
    key = jax.random.key(seed)
    init_key, shuffle_key = jax.random.split(key)
    bound = 1.0 / np.sqrt(features.shape[1])  # torch.nn.Linear's default initialisation
    params = (
        jax.random.uniform(init_key, (features.shape[1], n_classes), minval=-bound, maxval=bound),
        jnp.zeros((n_classes,)),
    )
    x, y = jnp.asarray(features), jnp.asarray(labels)

    def loss_fn(params, xb, yb):
        logits = xb @ params[0] + params[1]
        return optax.softmax_cross_entropy_with_integer_labels(logits, yb).mean()

    def epoch(carry, epoch_key):
        def step(carry, idx):
            params, opt_state = carry
            grads = jax.grad(loss_fn)(params, x[idx], y[idx])
            updates, opt_state = tx.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), None

        order = jax.random.permutation(epoch_key, n)[: steps * batch_size]
        return jax.lax.scan(step, carry, order.reshape(steps, -1))[0], None

    @jax.jit
    def run(params):
        carry = (params, tx.init(params))
        return jax.lax.scan(epoch, carry, jax.random.split(shuffle_key, epochs))[0][0]

    return run(params)


def predict(head: tuple[jax.Array, jax.Array], features: np.ndarray) -> np.ndarray:
    kernel, bias = head
    return np.asarray(jnp.argmax(jnp.asarray(features) @ kernel + bias, axis=-1))
