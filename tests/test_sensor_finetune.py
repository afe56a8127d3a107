"""A 1D sensor encoder downstream: raw windows normalised with the pre-training corpus's
statistics, through the same protocol, results.json, saved classifiers, predict and export as
the spectrogram encoders."""

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from img2imu_jax import cli
from img2imu_jax.checkpoint import Checkpointer
from img2imu_jax.classifier import SensorFrontend, class_probabilities, load_classifier
from img2imu_jax.export import export_litert, litert_probabilities, load_stablehlo
from img2imu_jax.finetune.config import finetune_base_config, validate_finetune
from img2imu_jax.finetune.protocol import evaluate
from img2imu_jax.finetune.results import default_normalisation
from img2imu_jax.finetune.training import FullFinetune, frontend_features
from img2imu_jax.imu.windows import Windows, cut_stream
from img2imu_jax.models.sensor_cnn import SensorCNN
from tests.test_finetune import tones

MEAN, STD = np.array([0.2, 0.9, -0.4]), np.array([0.5, 2.0, 1.5])
SUMMARY_KEYS = {"f1", "validation_f1", "settings", "learning_rates", "confusion", "mean", "std"}
RECORD_KEYS = {"dataset", "windows", "classes", "linear_protocol", "skipped_source_lines",
               "pretrained", "results", "models"}


def offset_tones() -> Windows:
    """test_finetune's two-frequency windows, offset and scaled per axis like raw readings."""
    windows = tones()
    return dataclasses.replace(windows, samples=(windows.samples * STD + MEAN).astype(np.float32))


def test_sensor_frontend_normalises_each_axis_like_numpy():
    windows = np.random.default_rng(0).normal(size=(5, 60, 3)).astype(np.float32)
    frontend = SensorFrontend(50.0, MEAN, STD)
    np.testing.assert_allclose(frontend.images(windows, batch_size=2), (windows - MEAN) / STD,
                               rtol=1e-5, atol=1e-6)
    assert frontend == SensorFrontend(50.0, tuple(MEAN), list(STD))  # hashable by value
    assert hash(frontend) == hash(SensorFrontend(50.0, tuple(MEAN), tuple(STD)))
    assert frontend.setting is None
    with pytest.raises(ValueError, match="std > 0"):
        SensorFrontend(50.0, MEAN, [1.0, 0.0, 1.0])


def test_the_protocol_evaluates_a_sensor_encoder_on_normalised_windows():
    encoder = SensorCNN(fc_features=16, rngs=nnx.Rngs(0))
    windows = offset_tones()
    frontend = SensorFrontend(50.0, MEAN, STD)
    features = frontend_features(encoder, frontend, windows.samples)
    expected = encoder(jnp.asarray((windows.samples - MEAN) / STD, jnp.float32))
    np.testing.assert_allclose(features, expected, rtol=1e-4, atol=1e-5)
    full = FullFinetune(head_epochs=1, epochs=1, batch_size=8)
    result, models = evaluate(encoder, windows, modes=("linear", "finetune"), shots=(4,),
                              folds=3, frontends=(frontend,), epochs=3, full=full)
    for mode in ("linear", "finetune"):
        summary = result[mode][4]
        assert set(summary) == SUMMARY_KEYS and len(summary["f1"]) == 3
        assert summary["settings"] == [None] * 3
        assert models[mode]["frontend"] == frontend
    changed = jax.tree.map(lambda a, b: not np.array_equal(a, b),
                           nnx.state(models["finetune"]["classifier"].encoder, nnx.Param),
                           nnx.state(encoder, nnx.Param))
    assert all(jax.tree.leaves(changed))  # the full fine-tune trained a copy of the encoder


@pytest.fixture(scope="module")
def sensor_finetune(tmp_path_factory):
    """`img2imu finetune` of a saved 1D encoder (and a random one) on BasicMotions, 2 s
    windows; the checkpoint carries its corpus's mean and std as pre-training saves them."""
    root = tmp_path_factory.mktemp("sensor")
    saved = SensorCNN(fc_features=16, rngs=nnx.Rngs(7))
    checkpoints = Checkpointer(root / "pre", save_every=1)
    checkpoints.save(1, {"model": {"encoder": nnx.state(saved)},
                         "train": {"input_mean": MEAN.astype(np.float32),
                                   "input_std": STD.astype(np.float32)}}, {"epoch": [0]})
    checkpoints.wait()
    checkpoints.close()
    workdir = root / "ft"
    assert cli.main(["finetune", "--config", "finetune_basicmotions", "--workdir", str(workdir),
                     f"--config.pretrained={root / 'pre' / 'checkpoints'}",
                     "--config.model.encoder=sensor_cnn", "--config.model.fc_features=16",
                     "--config.data.seconds=2.0", "--config.epochs=2", "--config.shots=(1,2)",
                     "--config.folds=3"]) == 0
    return saved, workdir


def test_finetune_a_sensor_encoder_writes_the_same_results_schema(sensor_finetune):
    saved, workdir = sensor_finetune
    record = json.loads((workdir / "results.json").read_text())
    assert set(record) == RECORD_KEYS
    assert set(record["results"]["linear"]) == {"pre-trained", "random init"}
    for by_n in record["results"]["linear"].values():
        assert set(by_n) == {"1", "2"}
        assert all(set(summary) == SUMMARY_KEYS and summary["settings"] == [None] * 3
                   for summary in by_n.values())
    classifier, frontend, meta = load_classifier(workdir / "models" / "pre_trained-linear")
    assert (meta["architecture"], meta["frontend"], meta["fc_features"]) == (
        "sensor_cnn", "sensor", 16)
    # Both 1D encoders see windows normalised with the checkpoint's statistics.
    np.testing.assert_allclose(frontend.mean, MEAN, rtol=1e-6)
    np.testing.assert_allclose(frontend.std, STD, rtol=1e-6)
    jax.tree.map(np.testing.assert_array_equal, nnx.state(classifier.encoder),
                 nnx.state(saved))
    _, random_frontend, _ = load_classifier(workdir / "models" / "random_init-linear")
    assert random_frontend == frontend


def test_predict_and_export_a_sensor_classifier(sensor_finetune, tmp_path, capsys):
    _, workdir = sensor_finetune
    model = workdir / "models" / "pre_trained-linear"
    classifier, frontend, _ = load_classifier(model)
    rng = np.random.default_rng(1)
    xyz = rng.normal(size=(150, 3)) * STD + MEAN  # 6 s at 25 Hz
    recording = tmp_path / "walk.csv"
    recording.write_text("".join(f"{x:.5f},{y:.5f},{z:.5f}\n" for x, y, z in xyz))
    capsys.readouterr()
    assert cli.main(["predict", "--checkpoint", str(model), str(recording),
                     "--sample-rate", "25"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()[1:]
    windows, _ = cut_stream(np.loadtxt(recording, delimiter=","), 25.0, seconds=2.0)
    manual = np.asarray(jax.nn.softmax(classifier(jnp.asarray((windows - MEAN) / STD,
                                                              jnp.float32))))
    assert len(lines) == len(windows) == 5
    for line, probabilities in zip(lines, manual):
        np.testing.assert_allclose(float(line.split(",")[3]), probabilities.max(), atol=1e-4)

    expected = class_probabilities(classifier, frontend, windows)
    assert cli.main(["export", str(model), "--to", "stablehlo", "-o", str(tmp_path / "clf")]) == 0
    program = load_stablehlo(tmp_path / "clf.jax_export")
    np.testing.assert_allclose(np.asarray(program.call(windows)), expected, atol=1e-5, rtol=0)
    assert cli.main(["export", str(model), "--to", "torchvision", "-o", str(tmp_path / "t")]) == 1
    assert "no torchvision form" in capsys.readouterr().err
    pytest.importorskip("ai_edge_litert")
    path = export_litert(model, tmp_path / "clf.tflite")
    np.testing.assert_allclose(litert_probabilities(path, windows), expected, atol=1e-5, rtol=0)
    described = json.loads((tmp_path / "clf.tflite.json").read_text())
    assert described["input_shape"] == [1, 100, 3] and described["frontend"] == "sensor"


def test_without_a_checkpoint_windows_are_normalised_with_their_own_statistics():
    windows = offset_tones()
    mean, std = default_normalisation(finetune_base_config(), windows)
    flat = windows.samples.reshape(-1, 3).astype(np.float64)
    np.testing.assert_allclose(mean, flat.mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(std, np.sqrt(((flat - flat.mean(0)) ** 2).mean(0)), rtol=1e-6)


def test_a_finetune_config_names_a_known_encoder_and_torchvision_weights_only_for_resnet():
    config = finetune_base_config()
    config.model.encoder = "lstm"
    with pytest.raises(ValueError, match="model.encoder must be one of"):
        validate_finetune(config)
    config.model.encoder = "sensor_cnn"
    validate_finetune(config)
    config.init = "torchvision:/weights/resnet18.pth"
    with pytest.raises(ValueError, match="init .torchvision weights. needs model.encoder"):
        validate_finetune(config)
