"""Protocol: subject-wise folds never leak a subject, shots are per class and seeded, macro-F1
equals scikit-learn's."""

import numpy as np
import pytest

from img2imu_jax.imu.protocol import few_shot, macro_f1, subject_folds
from img2imu_jax.imu.windows import Windows


def windows(subjects=10, per_subject=30, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    n = subjects * per_subject
    return Windows(
        samples=np.zeros((n, 4, 3), np.float32),
        labels=rng.integers(0, classes, n),
        subjects=np.repeat([f"s{i:02d}" for i in range(subjects)], per_subject),
        classes=tuple("abc"[:classes]),
        sample_rate=50.0,
    )


def test_subject_folds_are_disjoint_60_20_20_and_cover_every_subject_once_as_test():
    data = windows()
    folds = subject_folds(data, folds=5, seed=1)
    tested = []
    for fold in folds:
        parts = [set(data.subjects[idx]) for idx in (fold.train, fold.validation, fold.test)]
        assert [len(p) for p in parts] == [6, 2, 2]
        assert not (parts[0] & parts[1]) and not (parts[0] & parts[2]) and not (parts[1] & parts[2])
        assert len(fold.train) + len(fold.validation) + len(fold.test) == len(data)
        tested += sorted(parts[2])
    assert sorted(tested) == sorted(set(data.subjects))
    again = subject_folds(data, folds=5, seed=1)
    assert all(np.array_equal(a.test, b.test) for a, b in zip(folds, again))
    with pytest.raises(ValueError, match="3 subject\\(s\\) cannot make 5"):
        subject_folds(windows(subjects=3), folds=5)


def test_few_shot_draws_n_per_class_from_the_training_part_only():
    data = windows()
    fold = subject_folds(data, seed=0)[0]
    chosen = few_shot(data, fold.train, 5, seed=3)
    assert np.isin(chosen, fold.train).all()
    assert np.bincount(data.labels[chosen], minlength=3).tolist() == [5, 5, 5]
    np.testing.assert_array_equal(chosen, few_shot(data, fold.train, 5, seed=3))
    assert not np.array_equal(chosen, few_shot(data, fold.train, 5, seed=4))
    with pytest.raises(ValueError, match="class 'a' has .* in fold 0, fewer than 500 shots"):
        few_shot(data, fold.train, 500, seed=0, fold=0)


@pytest.mark.parametrize("y_true, y_pred, expected", [
    ([0, 0, 1, 1], [0, 1, 1, 1], (2 / 3 + 4 / 5) / 2),  # per-class F1 = 2 TP / (true + predicted)
    ([0, 0], [0, 2], (2 / 3 + 0) / 2),  # a class only predicted counts, with F1 0
    ([1, 1, 1], [1, 1, 1], 1.0),
])
def test_macro_f1_is_the_unweighted_mean_of_per_class_f1(y_true, y_pred, expected):
    assert macro_f1(np.array(y_true), np.array(y_pred)) == pytest.approx(expected)
