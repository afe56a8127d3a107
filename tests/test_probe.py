"""The pre-training probe's closed-form head: sklearn's ridge, strength chosen on validation."""

import numpy as np
import pytest
from sklearn.linear_model import Ridge
from sklearn.metrics import f1_score

from img2imu_jax.probe import few_shot_f1, ridge_head


def test_the_ridge_head_is_sklearns_ridge_on_one_hot_targets():
    rng = np.random.default_rng(0)
    features = rng.normal(size=(12, 40)) * 3 + 1
    labels = np.repeat(np.arange(4), 3)
    kernel, bias = ridge_head(features, labels, 4, ridge=0.1)
    centred = features - features.mean(axis=0)
    strength = 0.1 * np.sum(centred ** 2) / len(features)
    reference = Ridge(alpha=strength).fit(features, np.eye(4)[labels])
    np.testing.assert_allclose(kernel, reference.coef_.T, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(bias, reference.intercept_, rtol=1e-8, atol=1e-10)


def _sklearn_ridge_heads(features, labels, train, ridges):
    """sklearn's Ridge on one-hot targets at each of our relative strengths."""
    centred = features[train] - features[train].mean(axis=0)
    scale = np.sum(centred ** 2) / len(train)
    return [Ridge(alpha=r * scale).fit(features[train], np.eye(3)[labels[train]]) for r in ridges]


def test_the_ridge_strength_is_chosen_on_validation_never_on_test():
    rng = np.random.default_rng(1)
    labels = np.repeat(np.arange(3), 20)
    features = rng.normal(size=(60, 16)) + 2.0 * np.eye(3, 16)[labels]
    train, validation, test = np.arange(0, 60, 3), np.arange(1, 60, 3), np.arange(2, 60, 3)
    ridges = (1e-3, 1e2)
    heads = _sklearn_ridge_heads(features, labels, train, ridges)
    valid = [f1_score(labels[validation], h.predict(features[validation]).argmax(axis=1),
                      average="macro") for h in heads]
    tested = [f1_score(labels[test], h.predict(features[test]).argmax(axis=1), average="macro")
              for h in heads]
    assert valid[0] != valid[1] and tested[0] != tested[1]  # the choice decides the score
    chosen = int(np.argmax(valid))
    assert few_shot_f1(features, labels, 3, train, validation, test, ridges) == \
        pytest.approx(tested[chosen])
    # Scrambled test labels leave the choice alone: the same head, scored on those labels.
    scrambled = labels.copy()
    scrambled[test] = rng.permutation(scrambled[test])
    assert few_shot_f1(features, scrambled, 3, train, validation, test, ridges) == \
        pytest.approx(f1_score(scrambled[test], heads[chosen].predict(features[test]).argmax(
            axis=1), average="macro"))
