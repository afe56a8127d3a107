"""The pre-training probe's closed-form head: sklearn's ridge, strength chosen on validation."""

import numpy as np
from sklearn.linear_model import Ridge

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


def test_the_ridge_strength_is_chosen_on_validation_never_on_test():
    rng = np.random.default_rng(1)
    labels = np.repeat(np.arange(3), 20)
    features = rng.normal(size=(60, 16)) + 2.0 * np.eye(3, 16)[labels]
    train, validation, test = np.arange(0, 60, 3), np.arange(1, 60, 3), np.arange(2, 60, 3)
    ridges = (1e-3, 1e2)
    f1 = few_shot_f1(features, labels, 3, train, validation, test, ridges)
    # The same choice whatever the test labels are: scramble them and the chosen head's
    # test predictions, scored against the true labels, do not change.
    scrambled = labels.copy()
    scrambled[test] = rng.permutation(scrambled[test])
    from img2imu_jax.imu.protocol import macro_f1
    from img2imu_jax.probe import predict

    heads = [ridge_head(features[train], labels[train], 3, r) for r in ridges]
    valid = [macro_f1(labels[validation], predict(h, features[validation])) for h in heads]
    expected = macro_f1(labels[test], predict(heads[int(np.argmax(valid))], features[test]))
    assert f1 == expected
    assert few_shot_f1(features, scrambled, 3, train, validation, test, ridges) == \
        macro_f1(scrambled[test], predict(heads[int(np.argmax(valid))], features[test]))
