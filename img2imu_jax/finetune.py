"""Downstream: the paper's few-shot protocol — linear evaluation and full fine-tuning.

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
import json
import logging
import os
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from img2imu_jax import reports
from img2imu_jax.checkpoint import abstract_like, restore_encoder
from img2imu_jax.torch_weights import initialise_encoder
from img2imu_jax.classifier import (Classifier, Features, Frontend, class_probabilities,
                                    in_batches, save_classifier)
from img2imu_jax.imu.protocol import SHOTS, few_shot, macro_f1, subject_folds
from img2imu_jax.imu.recordings import IMUDataset
from img2imu_jax.imu.registry import load_dataset
from img2imu_jax.imu.windows import WINDOW_OVERLAP, Windows, make_windows
from img2imu_jax.models.resnet import ResNet
from img2imu_jax.paths import user_path
from img2imu_jax.protocol_log import ProtocolProgress

log = logging.getLogger(__name__)


def spectrogram_grid(nffts, gaps) -> tuple[tuple[int, int], ...]:
    """`(nfft, noverlap)` for every nfft and every gap, noverlap = nfft - gap."""
    return tuple((int(nfft), int(nfft) - int(gap)) for nfft in nffts for gap in gaps)


# The paper's (v2) grid, searched per task on the validation subjects.
SPECTROGRAM_GRID = spectrogram_grid((32, 64, 128, 256), (2, 4, 8, 16))

# The paper's linear evaluation (v2 §IV-A): Adam, 50 epochs, batch 4, learning rate warmed
# from 1e-8 to 1e-5 over 10 epochs, then cosine to 1e-6.
LINEAR_EPOCHS, LINEAR_BATCH, LINEAR_WARMUP_EPOCHS = 50, 4, 10
LINEAR_LR, LINEAR_LR_START, LINEAR_LR_END = 1e-5, 1e-8, 1e-6

MODES = ("linear", "finetune")
# The `config.data` fields that say where windows come from; saved with every classifier.
SOURCE_KEYS = ("dataset", "data_dir", "generic_sample_rate", "label_rule")

# The recommended linear evaluation ('tuned'): the head's peak learning rate chosen per encoder
# and fold on the validation subjects, jointly with the spectrogram setting, because one fixed
# rate favours whichever encoder's feature scale suits it (issue 10). 'paper' is v2's fixed 1e-5.
LINEAR_PROTOCOLS = ("tuned", "paper")
TUNED_LRS = (1e-4, 1e-3, 1e-2, 1e-1)


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
    frontend = Frontend(float(sample_rate), int(nfft), int(noverlap))
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
    encoder: ResNet,
    windows: np.ndarray,
    labels: np.ndarray,
    n_classes: int,
    *,
    frontend: Frontend,
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
    classifier = _classifier(nnx.clone(encoder), head, seed)
    return train_network(classifier, frontend.images(windows), labels, seed=seed,
                         epochs=settings.epochs, learning_rate=settings.lr,
                         batch_size=settings.batch_size, momentum=settings.momentum)


def evaluate(
    encoder: ResNet,
    windows: Windows,
    *,
    modes: tuple[str, ...] = ("linear",),
    shots: tuple[int, ...] = SHOTS,
    folds: int = 5,
    grid: tuple[tuple[int, int], ...] = SPECTROGRAM_GRID,
    seed: int = 0,
    epochs: int = LINEAR_EPOCHS,
    linear_lr: float = LINEAR_LR,
    full: FullFinetune = FullFinetune(),
    tuned_lrs: tuple[float, ...] = (),
    standardize: bool = False,
    on_result=None,
) -> tuple[dict, dict]:
    """The paper's protocol for one encoder: per fold and shot count, the spectrogram setting
    whose linear head scores best on the validation subjects, then each mode's test macro-F1.

    The head's peak learning rate is the paper's fixed `linear_lr`, or with `tuned_lrs` the
    one of them that scores best on validation jointly with the setting; `standardize` fits
    the head on features standardised with the n-shot training set's mean and std (folded
    into the head, so saved classifiers take raw features).

    Modes: `linear` (frozen encoder, the head selected above) and `finetune` (the two-phase
    full fine-tune, at the setting linear evaluation selected: searching the grid with full
    fine-tunes would cost 16× more). Returns `(results, models)`: `results[mode][n]` holds
    `f1` (per fold), `mean`, `std`, `settings`, `learning_rates`, and `confusion` (test counts summed over folds,
    true class by row); `models[mode]` the classifier (and its frontend) at the largest n from
    the fold with the best validation macro-F1, with where it came from. `on_result(mode,
    fold, n, test_f1, validation_f1)`, if given, hears of each result as it is found.
    """
    unknown = set(modes) - set(MODES)
    if unknown or not modes:
        raise ValueError(f"modes must be among {MODES}; got {modes}")
    features = {
        setting: extract_features(encoder, windows.samples, sample_rate=windows.sample_rate,
                                  nfft=setting[0], noverlap=setting[1])
        for setting in grid
    }
    labels, n_classes = windows.labels, len(windows.classes)
    results = {mode: {n: {"f1": [], "validation_f1": [], "settings": [], "learning_rates": [],
                          "confusion": np.zeros((n_classes, n_classes), np.int64)}
                      for n in shots} for mode in modes}
    models: dict[str, dict] = {}
    for fold in subject_folds(windows, folds=folds, seed=seed):
        for n in shots:
            train = few_shot(windows, fold.train, n, seed=seed + fold.index, fold=fold.index)
            setting, lr, head = _best_linear_head(
                features, labels, train, fold.validation, n_classes, seed=seed, epochs=epochs,
                learning_rates=tuple(tuned_lrs) or (linear_lr,), standardize=standardize)
            for mode in modes:
                if mode == "linear":
                    model = None  # built only if it is the one to save
                    classify = functools.partial(_predict_features, head, features[setting])
                else:
                    log.info("full fine-tune: fold %d, %d-shot, nfft %d, noverlap %d",
                             fold.index, n, *setting)
                    frontend = Frontend(windows.sample_rate, *setting)
                    model = full_finetune(
                        encoder, windows.samples[train], labels[train], n_classes,
                        frontend=frontend, seed=seed + fold.index, settings=full,
                        features=features[setting][train])
                    classify = functools.partial(_predict_windows, model, frontend,
                                                 windows.samples)
                valid_f1 = macro_f1(labels[fold.validation], classify(fold.validation))
                predicted = classify(fold.test)
                summary = results[mode][n]
                summary["f1"].append(macro_f1(labels[fold.test], predicted))
                summary["validation_f1"].append(valid_f1)
                summary["settings"].append(setting)
                summary["learning_rates"].append(lr)
                np.add.at(summary["confusion"], (labels[fold.test], predicted), 1)
                if on_result is not None:
                    on_result(mode, fold.index, n, summary["f1"][-1], valid_f1)
                best = models.get(mode)
                if n == max(shots) and (best is None or valid_f1 > best["validation_f1"]):
                    models[mode] = {"classifier": model or _classifier(encoder, head, seed),
                                    "frontend": Frontend(windows.sample_rate, *setting),
                                    "fold": fold.index, "shots": n,
                                    "validation_f1": valid_f1, "test_f1": summary["f1"][-1],
                                    **_fold_subjects(windows, fold)}
    for by_n in results.values():
        for summary in by_n.values():
            summary.update(mean=float(np.mean(summary["f1"])), std=float(np.std(summary["f1"])),
                           confusion=summary["confusion"].tolist())
    return results, models


def _best_linear_head(features: dict, labels: np.ndarray, train: np.ndarray,
                      validation: np.ndarray, n_classes: int, *, seed: int, epochs: int,
                      learning_rates: tuple[float, ...], standardize: bool):
    """`(setting, learning rate, head)` whose head scores best on `validation`; ties go to the
    first in grid order. Test windows are never looked at."""
    candidates = []
    for setting, values in features.items():
        x = values[train]
        mean, std = (x.mean(axis=0), x.std(axis=0) + 1e-6) if standardize else (0.0, 1.0)
        x = (x - mean) / std
        if len(learning_rates) == 1:  # the paper's protocol: its one compiled program
            heads = [train_linear_head(x, labels[train], n_classes, seed=seed, epochs=epochs,
                                       learning_rate=learning_rates[0])]
        else:
            heads = train_linear_heads(x, labels[train], n_classes, seed=seed, epochs=epochs,
                                       learning_rates=learning_rates)
        for lr, (kernel, bias) in zip(learning_rates, heads):
            if standardize:  # fold the standardisation in: the head takes raw features
                scale = jnp.asarray(1.0 / std, jnp.float32)[:, None]
                kernel, bias = kernel * scale, bias - jnp.asarray(mean, jnp.float32) @ (
                    kernel * scale)
            head = (kernel, bias)
            candidates.append((macro_f1(labels[validation], predict(head, values[validation])),
                               setting, lr, head))
    _, setting, lr, head = max(candidates, key=lambda c: c[0])
    return setting, lr, head


def _classifier(encoder: ResNet, head: tuple[jax.Array, jax.Array], seed: int) -> Classifier:
    classifier = Classifier(encoder, head[0].shape[1], rngs=nnx.Rngs(seed))
    classifier.head.kernel.value, classifier.head.bias.value = head
    return classifier


def _predict_features(head, features: np.ndarray, indices: np.ndarray) -> np.ndarray:
    return predict(head, features[indices])


def _fold_subjects(windows: Windows, fold) -> dict[str, list]:
    """Which subjects a fold trains and tests on, so its windows can be cut again later
    (`img2imu export --int8` measures the quantised model on the same test windows)."""
    return {f"{part}_subjects": np.unique(windows.subjects[getattr(fold, part)]).tolist()
            for part in ("train", "test")}


def _predict_windows(classifier: Classifier, frontend: Frontend, samples: np.ndarray,
                     indices: np.ndarray) -> np.ndarray:
    return class_probabilities(classifier, frontend, samples[indices]).argmax(axis=-1)


def run(config, workdir: str | os.PathLike,
        encoders: dict[str, ResNet] | None = None) -> dict:
    """`img2imu finetune`: the protocol for each encoder — by default `default_encoders` — written
    as results.json, results.md, f1_vs_shots.png and, with `config.save_models`, one saved
    classifier per encoder and mode under `models/`."""
    workdir = user_path(workdir, what="workdir")
    workdir.mkdir(parents=True, exist_ok=True)
    dataset, windows = source_windows(config.data, seconds=config.data.seconds,
                                      sample_rate=config.data.sample_rate)
    grid = spectrogram_grid(config.grid_nfft, config.grid_gaps)
    if encoders is None:
        encoders = default_encoders(config)
    results: dict[str, dict] = {mode: {} for mode in config.modes}
    saved = {}
    progress = ProtocolProgress(len(encoders) * config.folds * sum(
        len(modes) * len(shots) for modes, shots in _shot_groups(config)), workdir)
    for name, encoder in encoders.items():
        log.info("%s of the %s encoder on %s (%d windows, %d subjects)",
                 " and ".join(config.modes), name, dataset.name, len(windows),
                 len(dataset.subjects))
        by_mode, models = {}, {}
        for modes, shots in _shot_groups(config):
            found, best = evaluate(encoder, windows, modes=modes, shots=shots,
                                   folds=config.folds, grid=grid, seed=config.seed,
                                   epochs=config.epochs, linear_lr=config.linear_lr,
                                   full=FullFinetune(**config.finetune),
                                   on_result=functools.partial(progress, name),
                                   **linear_protocol(config))
            by_mode.update(found)
            models.update(best)
        for mode, by_n in by_mode.items():
            results[mode][name] = by_n
        for mode, model in models.items() if config.save_models else ():
            origin = {key: value for key, value in model.items()
                      if key not in ("classifier", "frontend")}
            path = save_classifier(
                workdir / "models" / f"{_slug(name)}-{mode}", model["classifier"],
                model["frontend"],
                {"dataset": dataset.name, "classes": list(dataset.classes), "encoder": name,
                 "mode": mode, "seconds": config.data.seconds, "overlap": WINDOW_OVERLAP,
                 "source_sample_rate": dataset.recordings[0].sample_rate,
                 "source": {key: config.data[key] for key in SOURCE_KEYS}, **origin})
            saved[f"{name} / {mode}"] = str(path)
    progress.close()
    record = {"dataset": dataset.name, "windows": len(windows), "classes": list(dataset.classes),
              "linear_protocol": config.linear.protocol,
              "skipped_source_lines": dataset.skipped, "pretrained": config.pretrained,
              "results": {mode: {name: {str(n): r for n, r in by_n.items()}
                                 for name, by_n in by_name.items()}
                          for mode, by_name in results.items()},
              "models": saved}
    (workdir / "results.json").write_text(json.dumps(record, indent=2) + "\n")
    (workdir / "results.md").write_text(reports.results_markdown(record))
    reports.plot_f1_vs_shots(record, workdir / "f1_vs_shots.png")
    return record


def source_windows(source: Mapping[str, Any], *, seconds: float,
                   sample_rate: float) -> tuple[IMUDataset, Windows]:
    """The dataset `source` names (`SOURCE_KEYS` of `config.data`) and its windows."""
    dataset = load_dataset(source["dataset"], source["data_dir"] or None,
                           sample_rate=source["generic_sample_rate"] or None)
    return dataset, make_windows(dataset, seconds=seconds, sample_rate=sample_rate,
                                 label_rule=source["label_rule"])


def linear_protocol(config) -> dict:
    """`evaluate`'s head-rate arguments for `config.linear.protocol`."""
    if config.linear.protocol == "paper":
        return {}
    return {"tuned_lrs": tuple(config.linear.lrs), "standardize": config.linear.standardize}


def _shot_groups(config) -> list[tuple[tuple[str, ...], tuple[int, ...]]]:
    """(modes, shots) to evaluate together: the full fine-tune may use fewer shot counts."""
    shots, modes = tuple(config.shots), tuple(config.modes)
    own = tuple(config.finetune_shots)
    if "finetune" not in modes or not own or own == shots:
        return [(modes, shots)]
    linear = [(("linear",), shots)] if "linear" in modes else []
    return linear + [(("finetune",), own)]


def default_encoders(config) -> dict[str, ResNet]:
    """The encoders `run` evaluates by default: the pre-trained one (`config.pretrained`), one
    from torchvision weights (`config.init`) and a randomly initialised one."""
    encoders = {"random init": load_encoder(config, None)}
    if config.get("init"):
        encoders = {"torchvision init": initialise_encoder(load_encoder(config, None),
                                                           config.init), **encoders}
    if config.pretrained:
        encoders = {"pre-trained": load_encoder(config, config.pretrained), **encoders}
    return encoders


def load_encoder(config, checkpoints: str | None) -> ResNet:
    """The config's ResNet: restored from a pre-training `checkpoints/` directory, or random."""
    encoder = ResNet(config.model.depth, width=config.model.width, rngs=nnx.Rngs(config.seed))
    if checkpoints:
        one = jax.sharding.SingleDeviceSharding(jax.devices()[0])
        nnx.update(encoder, restore_encoder(user_path(checkpoints, what="pretrained"),
                                            abstract_like(nnx.state(encoder), one)))
    return encoder


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name.lower()).strip("_")
