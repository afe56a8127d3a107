"""Training on few-shot IMU windows: a linear head on frozen features, or the whole network.

Linear evaluation never changes the encoder, so the features of every window are computed
once per (dataset, spectrogram setting) — spectrogram, ImageNet normalisation and encoder in
one jitted function, in large batches on the device — and heads are then trained on those
features alone, which costs next to nothing per fold and shot count. The full fine-tune
trains the whole network from raw windows (spectrogram inside the compiled step), starting
from the head phase 1 trains on those same features.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from img2imu_jax.classifier import Classifier, Features, Frontend, SensorFrontend, in_batches
from img2imu_jax.models.resnet import ResNet
from img2imu_jax.models.sensor_cnn import SensorCNN

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
    return frontend_features(encoder, Frontend(float(sample_rate), int(nfft), int(noverlap)),
                             windows, batch_size=batch_size)


def frontend_features(encoder: nnx.Module, frontend: Frontend | SensorFrontend,
                      windows: np.ndarray, *, batch_size: int = 1024) -> np.ndarray:
    """`extract_features` with any frontend: spectrogram images or normalised windows."""
    return in_batches(encoder, Features(frontend), windows, batch_size=batch_size)


def linear_schedule(steps_per_epoch: int, *, epochs: int = LINEAR_EPOCHS,
                    peak: float = LINEAR_LR) -> optax.Schedule:
    """The paper's head schedule, 1e-8 → 1e-5 linearly over 10 of 50 epochs then cosine to
    1e-6; for other lengths and peaks the same shape: warm-up over the first fifth from
    peak/1000, cosine to peak/10."""
    warmup = round(epochs * LINEAR_WARMUP_EPOCHS / LINEAR_EPOCHS) * steps_per_epoch
    total = epochs * steps_per_epoch
    return optax.join_schedules(
        [optax.linear_schedule(peak * LINEAR_LR_START / LINEAR_LR, peak, warmup),
         optax.cosine_decay_schedule(peak, total - warmup, LINEAR_LR_END / LINEAR_LR)],
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
    learning_rate: float = LINEAR_LR,
    optimizer: str = "adam",
    momentum: float = 0.9,
) -> tuple[jax.Array, jax.Array]:
    """A softmax linear head `(kernel, bias)` trained on fixed features with Adam (the paper's
    linear evaluation; `schedule` defaults to its schedule peaking at `learning_rate`) or SGD
    with momentum (phase 1 of its full fine-tune).

    The run is one jitted `lax.scan` over epochs and shuffled minibatches; the learning rates
    go in as an array, so every fold, shot count and setting with the same shapes reuses one
    compiled program.
    """
    batch_size = min(batch_size, len(features))
    steps = len(features) // batch_size
    schedule = schedule or linear_schedule(steps, epochs=epochs, peak=learning_rate)
    rates = _rates(schedule, epochs, steps)
    params, shuffle_key = _initial_head(features.shape[1], n_classes, seed)
    return _fit_head(params, jnp.asarray(features, jnp.float32), jnp.asarray(labels), rates,
                     jax.random.split(shuffle_key, epochs), batch_size, optimizer, momentum)


def train_linear_heads(
    features: np.ndarray,
    labels: np.ndarray,
    n_classes: int,
    *,
    seed: int,
    learning_rates: tuple[float, ...],
    epochs: int = LINEAR_EPOCHS,
    batch_size: int = LINEAR_BATCH,
) -> list[tuple[jax.Array, jax.Array]]:
    """`train_linear_head` (Adam, the paper's schedule shape) at every peak learning rate at
    once: the same initialisation and minibatch order, the runs vmapped in one program."""
    batch_size = min(batch_size, len(features))
    steps = len(features) // batch_size
    rates = jnp.stack([_rates(linear_schedule(steps, epochs=epochs, peak=lr), epochs, steps)
                       for lr in learning_rates])
    params, shuffle_key = _initial_head(features.shape[1], n_classes, seed)
    kernels, biases = _fit_heads(params, jnp.asarray(features, jnp.float32), jnp.asarray(labels),
                                 rates, jax.random.split(shuffle_key, epochs), batch_size)
    return [(kernels[i], biases[i]) for i in range(len(learning_rates))]


def train_network(
    classifier: Classifier,
    images: jax.Array,
    labels: np.ndarray,
    *,
    seed: int,
    epochs: int,
    learning_rate: float,
    batch_size: int = 16,
    momentum: float = 0.9,
) -> Classifier:
    """Phase 2 of the paper's (v1) full fine-tune: the whole network, SGD with momentum, in
    train mode (BatchNorm on batch statistics, updating its running ones), in place.

    `images` are the frontend's (`Frontend.images`): without augmentation they are the same
    every epoch, so they are computed once, and the compiled step depends only on their shape.
    Steps run from a Python loop, one compiled step each: XLA's CPU backend runs convolutions
    inside a `lax.scan` body ~30× slower than the same step on its own.
    """
    batch_size = min(batch_size, len(images))
    steps = len(images) // batch_size
    transform = optax.trace(decay=momentum)
    classifier.train()
    graphdef, params, rest = nnx.split(classifier, nnx.Param, ...)
    params, rest = jax.tree.map(jnp.copy, (params, rest))  # donated below; others may share them
    opt_state = transform.init(params)
    images, labels = jnp.asarray(images), jnp.asarray(labels)
    for key in jax.random.split(jax.random.key(seed), epochs):
        order = jax.random.permutation(key, len(images))[: steps * batch_size]
        for indices in order.reshape(steps, batch_size):
            params, rest, opt_state = _network_step(graphdef, params, rest, opt_state, images,
                                                    labels, indices, learning_rate, momentum)
    nnx.update(classifier, params, rest)
    classifier.eval()
    return classifier


def _initial_head(n_features: int, n_classes: int, seed: int):
    """torch.nn.Linear's default initialisation, and the key that shuffles minibatches."""
    init_key, shuffle_key = jax.random.split(jax.random.key(seed))
    bound = 1.0 / np.sqrt(n_features)
    params = (jax.random.uniform(init_key, (n_features, n_classes), minval=-bound, maxval=bound),
              jnp.zeros((n_classes,)))
    return params, shuffle_key


def _rates(schedule: optax.Schedule, epochs: int, steps: int) -> jax.Array:
    rates = jax.vmap(schedule)(jnp.arange(epochs * steps)).astype(jnp.float32)
    return rates.reshape(epochs, steps)


def _direction(optimizer: str, momentum: float) -> optax.GradientTransformation:
    if optimizer == "adam":
        return optax.scale_by_adam()
    if optimizer == "sgd":
        return optax.trace(decay=momentum)
    raise ValueError(f"optimizer must be 'adam' or 'sgd'; got {optimizer!r}")


@functools.partial(jax.jit, static_argnames=("batch_size", "optimizer", "momentum"))
def _fit_head(params, x, y, rates, epoch_keys, batch_size: int, optimizer: str, momentum: float):
    transform = _direction(optimizer, momentum)

    def loss_fn(params, xb, yb):
        logits = xb @ params[0] + params[1]
        return optax.softmax_cross_entropy_with_integer_labels(logits, yb).mean()

    def step(carry, batch):
        params, opt_state = carry
        idx, rate = batch
        grads = jax.grad(loss_fn)(params, x[idx], y[idx])
        direction, opt_state = transform.update(grads, opt_state, params)
        return (jax.tree.map(lambda p, d: p - rate * d, params, direction), opt_state), None

    def epoch(carry, inputs):  # shuffled minibatches; a different remainder left out each epoch
        epoch_rates, key = inputs
        steps = epoch_rates.shape[0]
        order = jax.random.permutation(key, x.shape[0])[: steps * batch_size]
        return jax.lax.scan(step, carry, (order.reshape(steps, batch_size), epoch_rates))[0], None

    carry = (params, transform.init(params))
    return jax.lax.scan(epoch, carry, (rates, epoch_keys))[0][0]


@functools.partial(jax.jit, static_argnames=("batch_size",))
def _fit_heads(params, x, y, rates, epoch_keys, batch_size: int):
    fit = functools.partial(_fit_head, batch_size=batch_size, optimizer="adam", momentum=0.9)
    return jax.vmap(fit, in_axes=(None, None, None, 0, None))(params, x, y, rates, epoch_keys)


@functools.partial(jax.jit, static_argnums=0, donate_argnums=(1, 2, 3))
def _network_step(graphdef, params, rest, opt_state, images, labels, indices, rate, momentum):
    def loss_fn(params):
        model = nnx.merge(graphdef, params, jax.tree.map(jnp.asarray, rest))  # this trace's
        logits = model(images[indices])
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels[indices]).mean()
        return loss, nnx.state(model, nnx.Not(nnx.Param))

    grads, rest = jax.grad(loss_fn, has_aux=True)(params)
    direction, opt_state = optax.trace(decay=momentum).update(grads, opt_state, params)
    return jax.tree.map(lambda p, d: p - rate * d, params, direction), rest, opt_state


def predict(head: tuple[jax.Array, jax.Array], features: np.ndarray) -> np.ndarray:
    kernel, bias = head
    return np.asarray(jnp.argmax(jnp.asarray(features) @ kernel + bias, axis=-1))


@dataclasses.dataclass(frozen=True)
class FullFinetune:
    """The paper's (v1 §IV) end-to-end fine-tune, SGD with batch 16 in both phases: phase 1
    trains only the head on frozen features (lr 0.6, ×0.1 at epoch 40, 50 epochs); phase 2
    trains the whole network (lr 1e-4, 100 epochs). The momentum is not stated; 0.9 here."""

    head_epochs: int = 50
    head_lr: float = 0.6
    head_decay_epoch: int = 40
    head_decay: float = 0.1
    epochs: int = 100
    lr: float = 1e-4
    batch_size: int = 16
    momentum: float = 0.9


def full_finetune(
    encoder: ResNet | SensorCNN,
    windows: np.ndarray,
    labels: np.ndarray,
    n_classes: int,
    *,
    frontend: Frontend | SensorFrontend,
    seed: int,
    settings: FullFinetune = FullFinetune(),
    features: np.ndarray | None = None,
) -> Classifier:
    """A new classifier from a copy of `encoder` trained in the paper's two phases; `encoder`
    itself is left as it was. `features` (of `windows`, frozen) spare recomputing them."""
    if features is None:
        features = in_batches(encoder, Features(frontend), windows)
    steps = len(windows) // min(settings.batch_size, len(windows))
    schedule = optax.piecewise_constant_schedule(
        settings.head_lr, {settings.head_decay_epoch * steps: settings.head_decay})
    head = train_linear_head(features, labels, n_classes, seed=seed,
                             epochs=settings.head_epochs, batch_size=settings.batch_size,
                             schedule=schedule, optimizer="sgd", momentum=settings.momentum)
    classifier = head_classifier(nnx.clone(encoder), head, seed)
    return train_network(classifier, frontend.images(windows), labels, seed=seed,
                         epochs=settings.epochs, learning_rate=settings.lr,
                         batch_size=settings.batch_size, momentum=settings.momentum)


def head_classifier(encoder: ResNet | SensorCNN, head: tuple[jax.Array, jax.Array],
                    seed: int) -> Classifier:
    classifier = Classifier(encoder, head[0].shape[1], rngs=nnx.Rngs(seed))
    classifier.head.kernel[...], classifier.head.bias[...] = head
    return classifier


