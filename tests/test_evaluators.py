"""Evaluators as plug-ins: config.evals sections, their schedules, and the validation probe
against an independent reference that never reads a test subject."""

import numpy as np
import pytest
from flax import nnx
from sklearn.linear_model import Ridge
from sklearn.metrics import f1_score

from img2imu_jax.config import base_config, validate
from img2imu_jax.evaluators import EVALUATORS, Evaluators
from img2imu_jax.finetune.training import extract_features
from img2imu_jax.models.resnet import ResNet

WIDTH = 4


@pytest.fixture(scope="module")
def config():
    config = base_config()
    config.model.width = WIDTH
    for section in config.evals.values():
        section.update(dataset="basicmotions", folds=3, shots=(1, 5))
    config.evals.probe.every = 4
    config.evals.val_probe.every = 3
    return config


@pytest.fixture(scope="module")
def evals(config):
    return Evaluators(config)


@pytest.fixture(scope="module")
def encoder_and_state():
    encoder = ResNet(18, width=WIDTH, rngs=nnx.Rngs(7))
    return encoder, {"model": {"encoder": nnx.state(encoder)}}


def test_every_evaluator_module_is_found_and_the_defaults_validate():
    assert {"imu_fewshot", "imu_validation"} <= set(EVALUATORS)
    config = base_config()
    assert config.evals.val_probe.dataset == "wisdm2019" and config.evals.val_probe.every == 0
    validate(config)


@pytest.mark.parametrize("override, message", [
    ({"type": "no_such"}, "evals.probe: unknown evaluator type 'no_such'"),
    ({"every": -1}, "evals.probe: every must be >= 0"),
    ({"shots": (0,)}, "evals.probe: shots must be >= 1"),
])
def test_a_bad_section_is_named(override, message):
    config = base_config()
    config.evals.probe.update(override)
    with pytest.raises(ValueError, match=message):
        validate(config)


def test_a_validation_probe_switched_on_without_its_data_says_so():
    config = base_config()
    config.evals.val_probe.every = 100
    with pytest.raises(ValueError, match="evals.val_probe: dataset 'wisdm2019' needs data_dir"):
        validate(config)


def test_each_evaluator_runs_on_its_own_schedule_with_prefixed_metrics(evals, encoder_and_state):
    assert [s for s in range(1, 14) if evals.due(s, 13)] == [3, 4, 6, 8, 9, 12, 13]
    _, state = encoder_and_state
    at_three = evals.run(state, 3, 13)
    assert set(at_three) == {"val_probe/f1_1shot", "val_probe/f1_5shot", "val_probe/seconds"}
    at_zero = evals.run(state, 0, 13)  # every evaluator: the random-init reference
    assert {"probe/f1_1shot", "val_probe/f1_5shot"} <= set(at_zero)
    assert at_zero["val_probe/f1_5shot"] == at_three["val_probe/f1_5shot"]  # same weights


def test_the_validation_probe_matches_sklearn_on_validation_subjects(config, evals,
                                                                    encoder_and_state):
    encoder, state = encoder_and_state
    found = evals.run(state, 3, 13)
    probe = evals.evaluators["val_probe"]
    section = config.evals.val_probe
    windows = probe.windows
    features = np.asarray(extract_features(encoder, windows.samples,
                                           sample_rate=windows.sample_rate,
                                           nfft=section.nfft, noverlap=section.noverlap),
                          np.float64)
    n_classes = len(windows.classes)
    for n in section.shots:
        per_fold = []
        for fold, train in zip(probe.folds, probe.train[n]):
            x, y = features[train], windows.labels[train]
            scale = np.sum((x - x.mean(axis=0)) ** 2) / len(x)
            scores = [f1_score(windows.labels[fold.validation], Ridge(alpha=r * scale).fit(
                x, np.eye(n_classes)[y]).predict(features[fold.validation]).argmax(axis=1),
                average="macro") for r in section.ridges]
            per_fold.append(max(scores))
        assert found[f"val_probe/f1_{n}shot"] == pytest.approx(np.mean(per_fold), abs=1e-6)


def test_the_validation_probe_never_reads_a_test_window(evals):
    probe = evals.evaluators["val_probe"]
    features = np.random.default_rng(0).normal(size=(len(probe.windows.labels), 8))
    for fold, train in zip(probe.folds, probe.train[5]):
        poisoned = features.copy()
        poisoned[fold.test] = np.nan
        assert probe.score(poisoned, fold, train) == probe.score(features, fold, train)
