"""Few-shot macro-F1 on an IMU dataset's held-out test subjects (BasicMotions by default, which
every machine has): per fold, the ridge head whose strength scores best on the fold's
validation subjects, scored on its test subjects (`img2imu_jax.probe`)."""

from __future__ import annotations

import ml_collections
import numpy as np

from img2imu_jax import probe
from img2imu_jax.imu.protocol import Fold

validate = probe.validate


def default_config() -> ml_collections.ConfigDict:
    section = probe.default_config("basicmotions")
    section.type = "imu_fewshot"
    section.every = 1000
    return section


def describe(section: ml_collections.ConfigDict) -> str:
    return probe.describe(section, "held-out test")


class Evaluator(probe.FewShotProbe):
    def score(self, features: np.ndarray, fold: Fold, train: np.ndarray) -> float:
        return probe.few_shot_f1(features, self.windows.labels, len(self.windows.classes),
                                 train, fold.validation, fold.test, self.ridges)
