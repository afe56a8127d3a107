"""The paper's few-shot protocol for one encoder: subject-wise folds, the spectrogram setting
and head rate chosen on each fold's validation subjects, macro-F1 on its test subjects.
"""

from __future__ import annotations

import functools
import logging

import jax.numpy as jnp
import numpy as np

from img2imu_jax.classifier import Classifier, Frontend, SensorFrontend, class_probabilities
from img2imu_jax.finetune.training import (LINEAR_EPOCHS, LINEAR_LR, FullFinetune,
                                           frontend_features, full_finetune, head_classifier,
                                           predict, train_linear_head, train_linear_heads)
from img2imu_jax.imu.protocol import SHOTS, few_shot, macro_f1, subject_folds
from img2imu_jax.imu.windows import Windows
from img2imu_jax.models.resnet import ResNet
from img2imu_jax.models.sensor_cnn import SensorCNN

log = logging.getLogger(__name__)


def spectrogram_grid(nffts, gaps) -> tuple[tuple[int, int], ...]:
    """`(nfft, noverlap)` for every nfft and every gap, noverlap = nfft - gap."""
    return tuple((int(nfft), int(nfft) - int(gap)) for nfft in nffts for gap in gaps)


# The paper's (v2) grid, searched per task on the validation subjects.
SPECTROGRAM_GRID = spectrogram_grid((32, 64, 128, 256), (2, 4, 8, 16))

MODES = ("linear", "finetune")

# The recommended linear evaluation ('tuned'): the head's peak learning rate chosen per encoder
# and fold on the validation subjects, jointly with the spectrogram setting, because one fixed
# rate favours whichever encoder's feature scale suits it (benchmarks/RESULTS.md). 'paper' is v2's fixed 1e-5.
LINEAR_PROTOCOLS = ("tuned", "paper")
TUNED_LRS = (1e-4, 1e-3, 1e-2, 1e-1)


def evaluate(
    encoder: ResNet | SensorCNN,
    windows: Windows,
    *,
    modes: tuple[str, ...] = ("linear",),
    shots: tuple[int, ...] = SHOTS,
    folds: int = 5,
    grid: tuple[tuple[int, int], ...] = SPECTROGRAM_GRID,
    frontends: tuple[Frontend | SensorFrontend, ...] = (),
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

    The candidate frontends are `frontends` when given (a 1D encoder's one `SensorFrontend`),
    else the spectrogram at every `grid` setting.

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
    frontends = tuple(frontends) or tuple(Frontend(windows.sample_rate, *setting)
                                          for setting in grid)
    features = {frontend: frontend_features(encoder, frontend, windows.samples)
                for frontend in frontends}
    labels, n_classes = windows.labels, len(windows.classes)
    results = {mode: {n: {"f1": [], "validation_f1": [], "settings": [], "learning_rates": [],
                          "confusion": np.zeros((n_classes, n_classes), np.int64)}
                      for n in shots} for mode in modes}
    models: dict[str, dict] = {}
    for fold in subject_folds(windows, folds=folds, seed=seed):
        for n in shots:
            train = few_shot(windows, fold.train, n, seed=seed + fold.index, fold=fold.index)
            frontend, lr, head = _best_linear_head(
                features, labels, train, fold.validation, n_classes, seed=seed, epochs=epochs,
                learning_rates=tuple(tuned_lrs) or (linear_lr,), standardize=standardize)
            for mode in modes:
                if mode == "linear":
                    model = None  # built only if it is the one to save
                    classify = functools.partial(_predict_features, head, features[frontend])
                else:
                    log.info("full fine-tune: fold %d, %d-shot, %s", fold.index, n, frontend)
                    model = full_finetune(
                        encoder, windows.samples[train], labels[train], n_classes,
                        frontend=frontend, seed=seed + fold.index, settings=full,
                        features=features[frontend][train])
                    classify = functools.partial(_predict_windows, model, frontend,
                                                 windows.samples)
                valid_f1 = macro_f1(labels[fold.validation], classify(fold.validation))
                predicted = classify(fold.test)
                summary = results[mode][n]
                summary["f1"].append(macro_f1(labels[fold.test], predicted))
                summary["validation_f1"].append(valid_f1)
                summary["settings"].append(frontend.setting)
                summary["learning_rates"].append(lr)
                np.add.at(summary["confusion"], (labels[fold.test], predicted), 1)
                if on_result is not None:
                    on_result(mode, fold.index, n, summary["f1"][-1], valid_f1)
                best = models.get(mode)
                if n == max(shots) and (best is None or valid_f1 > best["validation_f1"]):
                    models[mode] = {"classifier": model or head_classifier(encoder, head, seed),
                                    "frontend": frontend,
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
    """`(frontend, learning rate, head)` whose head scores best on `validation`; ties go to the
    first in grid order. Test windows are never looked at."""
    candidates = []
    for frontend, values in features.items():
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
                               frontend, lr, head))
    _, frontend, lr, head = max(candidates, key=lambda c: c[0])
    return frontend, lr, head


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


