"""Few-shot macro-F1 on the validation subjects of an IMU dataset's folds (WISDM 2019 by
default), never its test subjects: a probe to choose pre-training settings by, which leaves
the test folds to the final protocol.

Per fold, ridge heads trained on n-shot draws from the training subjects score on the fold's
validation subjects; the score is the best over the ridge grid, the number the fine-tuning
protocol itself selects with (`img2imu_jax.probe`)."""

from __future__ import annotations

import ml_collections
import numpy as np

from img2imu_jax import probe
from img2imu_jax.imu.protocol import Fold

validate = probe.validate


def default_config() -> ml_collections.ConfigDict:
    section = probe.default_config("wisdm2019")
    section.type = "imu_validation"
    section.every = 0  # on once data_dir names the WISDM 2019 folder
    return section


def describe(section: ml_collections.ConfigDict) -> str:
    return probe.describe(section, "validation") + ", the best over its ridge grid"


class Evaluator(probe.FewShotProbe):
    def score(self, features: np.ndarray, fold: Fold, train: np.ndarray) -> float:
        scores, _ = probe.validation_f1s(features, self.windows.labels,
                                         len(self.windows.classes), train, fold.validation,
                                         self.ridges)
        return max(scores)
