"""The paper's evaluation protocol (v2): subject-wise folds, n-shot training sets, macro-F1.

Folds: subjects are shuffled with the seed and dealt into `folds` groups; fold k tests on group
k, validates on group k+1 and trains on the rest (60/20/20 by subject at 5 folds), so no
subject's windows are ever on both sides. Shots: n windows per class drawn, seeded, from the
fold's training windows.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from sklearn.metrics import f1_score

from img2imu_jax.imu.windows import Windows

SHOTS = (1, 2, 5, 10, 20, 50)


@dataclasses.dataclass(frozen=True)
class Fold:
    """Window indices of one fold's train, validation and test parts."""

    index: int
    train: np.ndarray
    validation: np.ndarray
    test: np.ndarray


def subject_folds(windows: Windows, *, folds: int = 5, seed: int = 0) -> list[Fold]:
    """Subject-wise folds over `windows` (train/validation/test = 60/20/20 at 5 folds)."""
    subjects = np.unique(windows.subjects)
    if folds < 3:
        raise ValueError(f"folds must be at least 3 (train, validation, test); got {folds}")
    if len(subjects) < folds:
        raise ValueError(
            f"{len(subjects)} subject(s) cannot make {folds} subject-wise folds; every fold "
            f"needs its own test and validation subjects"
        )
    order = np.random.default_rng(seed).permutation(subjects)
    groups = np.array_split(order, folds)
    result = []
    for k in range(folds):
        test, validation = groups[k], groups[(k + 1) % folds]
        held_out = np.isin(windows.subjects, np.concatenate([test, validation]))
        result.append(Fold(
            index=k,
            train=np.flatnonzero(~held_out),
            validation=np.flatnonzero(np.isin(windows.subjects, validation)),
            test=np.flatnonzero(np.isin(windows.subjects, test)),
        ))
    return result


def few_shot(windows: Windows, candidates: np.ndarray, shots: int, *, seed: int,
             fold: int | None = None) -> np.ndarray:
    """`shots` windows of every class, drawn without replacement from `candidates`."""
    rng = np.random.default_rng(seed)
    chosen = []
    for label, name in enumerate(windows.classes):
        pool = candidates[windows.labels[candidates] == label]
        if len(pool) < shots:
            where = f" in fold {fold}" if fold is not None else ""
            raise ValueError(
                f"class {name!r} has {len(pool)} training window(s){where}, fewer than "
                f"{shots} shots"
            )
        chosen.append(rng.choice(pool, size=shots, replace=False))
    return np.sort(np.concatenate(chosen))


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Unweighted mean of per-class F1 over every class seen in either array: scikit-learn's
    `f1_score(average="macro")`."""
    return float(f1_score(y_true, y_pred, average="macro"))
