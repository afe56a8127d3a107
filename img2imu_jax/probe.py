"""Few-shot IMU probes of an encoder while pre-training runs: does it get better for IMU?

Contrastive top-1 rises whether features improve or the network finds a shortcut, so the
trainer's IMU evaluators (`img2imu_jax.evaluators.imu_fewshot`, `.imu_validation`) ask for
few-shot macro-F1 on an IMU dataset's subject-wise folds as pre-training goes.

Everything that does not depend on the encoder — windows, subject folds, the n-shot training
draws — is prepared once per run. Each evaluation is one pass of the fused spectrogram +
encoder extraction of `finetune.training.extract_features` (compiled once per run) and, per fold and
shot count, a closed-form ridge head on one-hot targets (big_vision's `fewshot_lsr` idea):
no optimiser, no learning rate to tune, nothing compiled.
"""

from __future__ import annotations

import abc
import time

import jax
import ml_collections
import numpy as np
from flax import nnx

from img2imu_jax.classifier import in_batches
from img2imu_jax.finetune.training import extract_features
from img2imu_jax.imu.protocol import Fold, few_shot, macro_f1, subject_folds
from img2imu_jax.imu.registry import DATASETS, load_dataset
from img2imu_jax.imu.sensor_corpus import normalise
from img2imu_jax.imu.windows import make_windows
from img2imu_jax.models import SensorCNN, build_encoder
from img2imu_jax.models.sensor_cnn import window_features


def ridge_head(features: np.ndarray, labels: np.ndarray, n_classes: int,
               ridge: float) -> tuple[np.ndarray, np.ndarray]:
    """`(kernel, bias)` minimising ‖onehot − XW − b‖² + λ‖W‖² (bias unpenalised), solved in
    the dual since shots × classes ≪ features. λ = `ridge` × the mean squared norm of the
    centred training features, so one grid of `ridge` fits encoders of any feature scale."""
    x = np.asarray(features, np.float64)
    targets = np.eye(n_classes)[labels]
    mean = x.mean(axis=0)
    centred = x - mean
    gram = centred @ centred.T
    strength = ridge * max(np.trace(gram) / len(x), np.finfo(np.float64).tiny)
    dual = np.linalg.solve(gram + strength * np.eye(len(x)), targets - targets.mean(axis=0))
    kernel = centred.T @ dual
    return kernel, targets.mean(axis=0) - mean @ kernel


def predict(head: tuple[np.ndarray, np.ndarray], features: np.ndarray) -> np.ndarray:
    kernel, bias = head
    return np.argmax(np.asarray(features, np.float64) @ kernel + bias, axis=-1)


def validation_f1s(features: np.ndarray, labels: np.ndarray, n_classes: int, train: np.ndarray,
                   validation: np.ndarray, ridges) -> tuple[list[float], list]:
    """Macro-F1 on `validation` of a ridge head fitted on `train` at each strength, and the
    heads."""
    heads = [ridge_head(features[train], labels[train], n_classes, r) for r in ridges]
    return [macro_f1(labels[validation], predict(h, features[validation])) for h in heads], heads


def few_shot_f1(features: np.ndarray, labels: np.ndarray, n_classes: int, train: np.ndarray,
                validation: np.ndarray, test: np.ndarray, ridges) -> float:
    """Test macro-F1 of the ridge head whose strength scores best on `validation`."""
    scores, heads = validation_f1s(features, labels, n_classes, train, validation, ridges)
    best = heads[int(np.argmax(scores))]
    return macro_f1(labels[test], predict(best, features[test]))


def default_config(dataset: str) -> ml_collections.ConfigDict:
    """The keys of a few-shot IMU probe's `config.evals` section (its `type` and `every` are
    set by the evaluator that uses it)."""
    section = ml_collections.ConfigDict()
    section.dataset = dataset  # any registry dataset; all but basicmotions need data_dir
    section.data_dir = ""
    section.shots = (1, 10)
    section.folds = 5
    section.seed = 0
    section.seconds = 5.0
    section.sample_rate = 50.0
    section.nfft = 64  # one spectrogram setting (gap 8): the probe compares steps
    section.noverlap = 56
    section.ridges = (1e-3, 1e-2, 1e-1, 1.0)  # × mean squared feature norm
    return section


def validate(section: ml_collections.ConfigDict) -> None:
    """Checks a probe section before any data is read."""
    def check(ok: bool, message: str) -> None:
        if not ok:
            raise ValueError(message)

    check(section.dataset in DATASETS,
          f"dataset must be one of {DATASETS}; got {section.dataset!r}")
    check(section.every == 0 or section.dataset == "basicmotions" or bool(section.data_dir),
          f"dataset {section.dataset!r} needs data_dir (or every=0 to turn this one off)")
    check(bool(section.shots) and min(section.shots) >= 1,
          f"shots must be >= 1; got {section.shots}")
    check(section.folds >= 3, f"folds must be >= 3; got {section.folds}")
    check(0 <= section.noverlap < section.nfft,
          f"noverlap must be in [0, nfft={section.nfft}); got {section.noverlap}")
    check(bool(section.ridges) and min(section.ridges) > 0,
          f"ridges must be > 0; got {section.ridges}")


def describe(section: ml_collections.ConfigDict, subjects: str) -> str:
    """One sentence on what a probe section measures, for reports."""
    return (f"few-shot macro-F1 on {section.dataset}'s {subjects} subjects ({section.folds} "
            f"folds, {', '.join(map(str, section.shots))} shots, a closed-form ridge head on the "
            f"frozen encoder's features, nfft {section.nfft}, noverlap {section.noverlap})")


class FewShotProbe(abc.ABC):
    """The run's encoder's features of one IMU dataset's windows — a ResNet on spectrograms
    (one setting), or the 1D encoder on the windows normalised by the pre-training corpus's
    `input_mean`, `input_std` (saved in the training state) — with its subject-wise folds and
    seeded n-shot training draws prepared once; subclasses score them."""

    def __init__(self, section: ml_collections.ConfigDict, config: ml_collections.ConfigDict):
        dataset = load_dataset(section.dataset, section.data_dir or None)
        self.windows = make_windows(dataset, seconds=section.seconds,
                                    sample_rate=section.sample_rate)
        self.folds = subject_folds(self.windows, folds=section.folds, seed=section.seed)
        self.shots = tuple(int(n) for n in section.shots)
        self.train = {n: [few_shot(self.windows, fold.train, n, seed=section.seed + fold.index,
                                   fold=fold.index) for fold in self.folds]
                      for n in self.shots}
        self.setting = (int(section.nfft), int(section.noverlap))
        self.ridges = tuple(float(r) for r in section.ridges)
        # One float32 encoder for the whole run; each evaluation loads the current weights.
        self.encoder = build_encoder(config.model.encoder, depth=config.model.depth,
                                     width=config.model.width,
                                     fc_features=config.model.fc_features, rngs=nnx.Rngs(0))

    def run(self, train_state: dict) -> dict[str, float]:
        """`f1_<n>shot` (`score`'s mean over folds) and `seconds`; `train_state` is the
        trainer's, whose `model/encoder` is read (copied to the host), never changed."""
        # The copy waits for the step in flight; the probe's own time starts after it.
        local = jax.tree.map(lambda x: np.array(x.addressable_data(0)),
                             train_state["model"]["encoder"])
        started = time.perf_counter()
        nnx.update(self.encoder, local)
        if isinstance(self.encoder, SensorCNN):
            mean, std = (np.array(train_state["train"][name].addressable_data(0))
                         for name in ("input_mean", "input_std"))
            features = in_batches(self.encoder, window_features,
                                  normalise(self.windows.samples, mean, std))
        else:
            features = extract_features(self.encoder, self.windows.samples,
                                        sample_rate=self.windows.sample_rate,
                                        nfft=self.setting[0], noverlap=self.setting[1])
        metrics = {f"f1_{n}shot": float(np.mean([
            self.score(features, fold, train) for fold, train in zip(self.folds, self.train[n])]))
            for n in self.shots}
        metrics["seconds"] = time.perf_counter() - started
        return metrics

    @abc.abstractmethod
    def score(self, features: np.ndarray, fold: Fold, train: np.ndarray) -> float:
        """One fold's macro-F1 of heads trained on the windows `train` indexes."""
