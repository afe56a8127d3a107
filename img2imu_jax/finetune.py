"""Downstream evaluation: frozen-encoder features of IMU windows and the paper's linear head.

Linear evaluation never changes the encoder, so the features of every window are computed
once per (dataset, spectrogram setting) — spectrogram, ImageNet normalisation and encoder in
one jitted function, in large batches on the device — and heads are then trained on those
features alone, which costs next to nothing per fold and shot count.
"""

from __future__ import annotations

import functools
import json
import logging
import os
from pathlib import Path
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from img2imu_jax.checkpoint import abstract_like, restore_encoder
from img2imu_jax.imu.protocol import SHOTS, few_shot, macro_f1, subject_folds
from img2imu_jax.imu.registry import load_dataset
from img2imu_jax.imu.windows import Windows, make_windows
from img2imu_jax.models.resnet import ResNet
from img2imu_jax.spectrogram import normalize_imagenet, spectrogram_image

log = logging.getLogger(__name__)

# The paper's (v2) grid, searched per task on the validation subjects.
SPECTROGRAM_GRID = tuple((nfft, nfft - d) for nfft in (32, 64, 128, 256) for d in (2, 4, 8, 16))

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

    The run is one jitted `lax.scan` over epochs and shuffled minibatches; the learning rates
    go in as an array, so every fold, shot count and setting with the same shapes reuses one
    compiled program.
    """
    n = len(features)
    batch_size = min(batch_size, n)
    steps = n // batch_size
    schedule = schedule or linear_schedule(steps)
    rates = jax.vmap(schedule)(jnp.arange(epochs * steps)).astype(jnp.float32)
    rates = rates.reshape(epochs, steps)
    init_key, shuffle_key = jax.random.split(jax.random.key(seed))
    bound = 1.0 / np.sqrt(features.shape[1])  # torch.nn.Linear's default initialisation
    params = (
        jax.random.uniform(init_key, (features.shape[1], n_classes), minval=-bound, maxval=bound),
        jnp.zeros((n_classes,)),
    )
    return _fit_head(params, jnp.asarray(features, jnp.float32), jnp.asarray(labels), rates,
                     jax.random.split(shuffle_key, epochs), batch_size)


@functools.partial(jax.jit, static_argnames=("batch_size",))
def _fit_head(params, x, y, rates, epoch_keys, batch_size: int):
    adam = optax.scale_by_adam()

    def loss_fn(params, xb, yb):
        logits = xb @ params[0] + params[1]
        return optax.softmax_cross_entropy_with_integer_labels(logits, yb).mean()

    def epoch(carry, inputs):
        epoch_rates, epoch_key = inputs

        def step(carry, batch):
            params, opt_state = carry
            idx, rate = batch
            grads = jax.grad(loss_fn)(params, x[idx], y[idx])
            direction, opt_state = adam.update(grads, opt_state, params)
            params = jax.tree.map(lambda p, d: p - rate * d, params, direction)
            return (params, opt_state), None

        steps = epoch_rates.shape[0]
        order = jax.random.permutation(epoch_key, x.shape[0])[: steps * batch_size]
        return jax.lax.scan(step, carry, (order.reshape(steps, batch_size), epoch_rates))[0], None

    carry = (params, adam.init(params))
    return jax.lax.scan(epoch, carry, (rates, epoch_keys))[0][0]


def predict(head: tuple[jax.Array, jax.Array], features: np.ndarray) -> np.ndarray:
    kernel, bias = head
    return np.asarray(jnp.argmax(jnp.asarray(features) @ kernel + bias, axis=-1))


def linear_evaluation(
    encoder: nnx.Module,
    windows: Windows,
    *,
    shots: tuple[int, ...] = SHOTS,
    folds: int = 5,
    grid: tuple[tuple[int, int], ...] = SPECTROGRAM_GRID,
    seed: int = 0,
    epochs: int = LINEAR_EPOCHS,
) -> dict:
    """The paper's linear evaluation: per fold and shot count, the spectrogram setting with the
    best validation macro-F1, then that head's test macro-F1; mean ± std over folds.

    Returns `{n: {"f1": [per fold], "mean", "std", "settings": [(nfft, noverlap) per fold]}}`.
    """
    features = {
        setting: extract_features(encoder, windows.samples, sample_rate=windows.sample_rate,
                                  nfft=setting[0], noverlap=setting[1])
        for setting in grid
    }
    labels, n_classes = windows.labels, len(windows.classes)
    scores: dict[int, list[float]] = {n: [] for n in shots}
    settings: dict[int, list[tuple[int, int]]] = {n: [] for n in shots}
    for fold in subject_folds(windows, folds=folds, seed=seed):
        for n in shots:
            train = few_shot(windows, fold.train, n, seed=seed + fold.index, fold=fold.index)
            candidates = []
            for setting in grid:
                head = train_linear_head(features[setting][train], labels[train], n_classes,
                                         seed=seed, epochs=epochs)
                valid = fold.validation
                score = macro_f1(labels[valid], predict(head, features[setting][valid]))
                candidates.append((score, setting, head))
            _, setting, head = max(candidates, key=lambda c: c[0])
            scores[n].append(macro_f1(labels[fold.test], predict(head, features[setting][fold.test])))
            settings[n].append(setting)
    return {n: {"f1": scores[n], "mean": float(np.mean(scores[n])),
                "std": float(np.std(scores[n])), "settings": settings[n]} for n in shots}


def run(config, workdir: str | os.PathLike) -> dict:
    """`img2imu finetune`: linear evaluation of the pre-trained encoder (when given) and of a
    randomly initialised one, written as results.json, results.md and f1_vs_shots.png."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    dataset = load_dataset(config.data.dataset, config.data.data_dir or None,
                           sample_rate=config.data.generic_sample_rate or None)
    windows = make_windows(dataset, seconds=config.data.seconds,
                           sample_rate=config.data.sample_rate, label_rule=config.data.label_rule)
    grid = tuple((nfft, nfft - gap) for nfft in config.grid_nfft for gap in config.grid_gaps)
    encoders = {"random init": _encoder(config, None)}
    if config.pretrained:
        encoders = {"pre-trained": _encoder(config, config.pretrained), **encoders}
    results = {}
    for name, encoder in encoders.items():
        log.info("linear evaluation of the %s encoder on %s (%d windows)", name, dataset.name,
                 len(windows))
        results[name] = linear_evaluation(encoder, windows, shots=tuple(config.shots),
                                          folds=config.folds, grid=grid, seed=config.seed,
                                          epochs=config.epochs)
    record = {"dataset": dataset.name, "windows": len(windows), "classes": dataset.classes,
              "skipped_source_lines": dataset.skipped, "pretrained": config.pretrained,
              "results": {name: {str(n): r for n, r in res.items()} for name, res in results.items()}}
    (workdir / "results.json").write_text(json.dumps(record, indent=2) + "\n")
    (workdir / "results.md").write_text(_markdown(dataset.name, results))
    _plot(dataset.name, results, workdir / "f1_vs_shots.png")
    return record


def _encoder(config, checkpoints: str | None) -> nnx.Module:
    encoder = ResNet(config.model.depth, width=config.model.width, rngs=nnx.Rngs(config.seed))
    if checkpoints:
        one = jax.sharding.SingleDeviceSharding(jax.devices()[0])
        nnx.update(encoder, restore_encoder(checkpoints, abstract_like(nnx.state(encoder), one)))
    return encoder


def _markdown(dataset: str, results: dict) -> str:
    shots = list(next(iter(results.values())))
    lines = [f"Macro-F1 (%) on {dataset}, linear evaluation, mean ± std over folds", "",
             "| encoder | " + " | ".join(f"{n}-shot" for n in shots) + " |",
             "|---|" + "---:|" * len(shots)]
    for name, res in results.items():
        cells = [f"{100 * res[n]['mean']:.1f} ± {100 * res[n]['std']:.1f}" for n in shots]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _plot(dataset: str, results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(5, 3.5))
    for name, res in results.items():
        shots = list(res)
        means = np.array([res[n]["mean"] for n in shots]) * 100
        stds = np.array([res[n]["std"] for n in shots]) * 100
        axes.errorbar(shots, means, yerr=stds, marker="o", capsize=3, label=name)
    axes.set(xscale="log", xlabel="labelled windows per class", ylabel="macro-F1 (%)",
             title=dataset)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
