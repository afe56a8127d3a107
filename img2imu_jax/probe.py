"""A downstream probe while pre-training runs: does the encoder get better for IMU?

Contrastive top-1 rises whether features improve or the network finds a shortcut, so every
`probe.eval_every` steps (and at step 0, the random-init reference, and at the end) the
trainer asks this probe for few-shot macro-F1 on an IMU dataset's held-out subjects.

Everything that does not depend on the encoder — windows, subject folds, the n-shot training
draws — is prepared once per run. Each evaluation is one pass of the fused spectrogram +
encoder extraction of `finetune.training.extract_features` (compiled once per run) and, per fold and
shot count, a closed-form ridge head on one-hot targets (big_vision's `fewshot_lsr` idea):
no optimiser, no learning rate to tune, nothing compiled. Its ridge strength is chosen per
fold on the fold's validation subjects; the test subjects only score.
"""

from __future__ import annotations

import time

import jax
import ml_collections
import numpy as np
from flax import nnx

from img2imu_jax.finetune.training import extract_features
from img2imu_jax.imu.protocol import few_shot, macro_f1, subject_folds
from img2imu_jax.imu.registry import load_dataset
from img2imu_jax.imu.windows import make_windows
from img2imu_jax.classifier import in_batches
from img2imu_jax.imu.sensor_corpus import normalise
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


def few_shot_f1(features: np.ndarray, labels: np.ndarray, n_classes: int, train: np.ndarray,
                validation: np.ndarray, test: np.ndarray, ridges) -> float:
    """Test macro-F1 of the ridge head whose strength scores best on `validation`."""
    heads = [ridge_head(features[train], labels[train], n_classes, r) for r in ridges]
    scores = [macro_f1(labels[validation], predict(h, features[validation])) for h in heads]
    best = heads[int(np.argmax(scores))]
    return macro_f1(labels[test], predict(best, features[test]))


class Probe:
    """Few-shot macro-F1 of the run's encoder on `config.probe.dataset`'s held-out subjects:
    a ResNet on spectrograms (one setting), or the 1D encoder on the windows normalised by
    the pre-training corpus's `input_stats` (`input_mean`, `input_std`)."""

    def __init__(self, config: ml_collections.ConfigDict,
                 input_stats: dict[str, np.ndarray] | None = None):
        probe = config.probe
        dataset = load_dataset(probe.dataset, probe.data_dir or None)
        self.windows = make_windows(dataset, seconds=probe.seconds,
                                    sample_rate=probe.sample_rate)
        self.folds = subject_folds(self.windows, folds=probe.folds, seed=probe.seed)
        self.shots = tuple(int(n) for n in probe.shots)
        self.train = {n: [few_shot(self.windows, fold.train, n, seed=probe.seed + fold.index,
                                   fold=fold.index) for fold in self.folds]
                      for n in self.shots}
        self.setting = (int(probe.nfft), int(probe.noverlap))
        self.ridges = tuple(float(r) for r in probe.ridges)
        self.every = int(probe.eval_every)
        # One float32 encoder for the whole run; each evaluation loads the current weights.
        self.encoder = build_encoder(config.model.encoder, depth=config.model.depth,
                                     width=config.model.width,
                                     fc_features=config.model.fc_features, rngs=nnx.Rngs(0))
        self.raw_inputs = None
        if isinstance(self.encoder, SensorCNN):
            if input_stats is None:
                raise ValueError("the probe of a 1D encoder needs the pre-training corpus's "
                                 "input_mean and input_std")
            self.raw_inputs = normalise(self.windows.samples, input_stats["input_mean"],
                                        input_stats["input_std"])

    def due(self, step: int, total_steps: int) -> bool:
        return step % self.every == 0 or step == total_steps

    def __call__(self, encoder_state) -> dict[str, float]:
        """`probe/f1_<n>shot` (mean over folds) and `probe/seconds`; `encoder_state` is the
        training state's `model/encoder`, read (copied to the host), never changed."""
        # The copy waits for the step in flight; the probe's own time starts after it.
        local = jax.tree.map(lambda x: np.array(x.addressable_data(0)), encoder_state)
        started = time.perf_counter()
        nnx.update(self.encoder, local)
        if self.raw_inputs is not None:
            features = in_batches(self.encoder, window_features, self.raw_inputs)
        else:
            features = extract_features(self.encoder, self.windows.samples,
                                        sample_rate=self.windows.sample_rate,
                                        nfft=self.setting[0], noverlap=self.setting[1])
        labels, n_classes = self.windows.labels, len(self.windows.classes)
        metrics = {}
        for n in self.shots:
            scores = [few_shot_f1(features, labels, n_classes, train, fold.validation,
                                  fold.test, self.ridges)
                      for fold, train in zip(self.folds, self.train[n])]
            metrics[f"probe/f1_{n}shot"] = float(np.mean(scores))
        metrics["probe/seconds"] = time.perf_counter() - started
        return metrics
