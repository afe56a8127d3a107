"""Linear evaluation: frozen features in one jitted pass, the paper's head schedule, a head
that separates separable features."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from img2imu_jax.finetune.training import extract_features, linear_schedule, predict, train_linear_head
from img2imu_jax.imu.protocol import macro_f1
from img2imu_jax.models.resnet import ResNet
from img2imu_jax.spectrogram import normalize_imagenet, spectrogram_image


@pytest.fixture(scope="module")
def encoder():
    return ResNet(18, width=8, rngs=nnx.Rngs(0))


def test_features_match_the_encoder_on_each_window_whatever_the_batch(encoder):
    windows = np.random.default_rng(0).normal(size=(5, 250, 3)).astype(np.float32)
    settings = dict(sample_rate=50.0, nfft=64, noverlap=56)
    batched = extract_features(encoder, windows, batch_size=4, **settings)
    assert batched.shape == (5, encoder.features)
    np.testing.assert_allclose(extract_features(encoder, windows, batch_size=16, **settings),
                               batched, rtol=1e-5, atol=1e-6)
    encoder.eval()
    one = encoder(normalize_imagenet(spectrogram_image(jnp.asarray(windows[:1]), **settings)))
    np.testing.assert_allclose(batched[:1], one, rtol=1e-4, atol=1e-5)


def test_the_paper_schedule():
    schedule = linear_schedule(steps_per_epoch=3)
    assert float(schedule(0)) == pytest.approx(1e-8)
    assert float(schedule(30)) == pytest.approx(1e-5)
    assert float(schedule(150)) == pytest.approx(1e-6)
    assert 1e-6 < float(schedule(90)) < 1e-5
    stretched = linear_schedule(steps_per_epoch=2, epochs=100, peak=1e-3)  # same shape
    assert float(stretched(0)) == pytest.approx(1e-6, rel=1e-4)
    assert float(stretched(40)) == pytest.approx(1e-3, rel=1e-4)  # a fifth of the epochs
    assert float(stretched(200)) == pytest.approx(1e-4, rel=1e-4)


def test_a_linear_head_separates_separable_features():
    rng = np.random.default_rng(1)
    centres = rng.normal(size=(4, 16)) * 3
    labels = np.repeat(np.arange(4), 10)
    features = centres[labels] + rng.normal(size=(40, 16)) * 0.3
    head = train_linear_head(features, labels, 4, seed=0, epochs=40,
                             schedule=optax.constant_schedule(0.05))
    assert macro_f1(labels, predict(head, features)) == 1.0
    untrained = train_linear_head(features, labels, 4, seed=0, epochs=1,
                                  schedule=optax.constant_schedule(0.0))
    assert macro_f1(labels, predict(untrained, features)) < 1.0


def tones(subjects=6, per_subject=8, seed=0):
    """Each class a different dominant frequency: separable for any reasonable frontend."""
    from img2imu_jax.imu.windows import Windows

    rng = np.random.default_rng(seed)
    t = np.arange(100) / 50.0
    labels = np.tile(np.arange(2), subjects * per_subject // 2)
    freqs = np.array([2.0, 11.0])[labels]
    samples = np.sin(2 * np.pi * freqs[:, None, None] * t[None, :, None]
                     + rng.uniform(0, 6, (len(labels), 1, 3)))
    samples += rng.normal(0, 0.1, samples.shape)
    return Windows(samples.astype(np.float32), labels,
                   np.repeat([f"s{i}" for i in range(subjects)], per_subject), ("low", "high"),
                   50.0)


def test_the_protocol_scores_every_fold_and_keeps_the_best_model(encoder):
    from img2imu_jax.finetune.protocol import evaluate
    from img2imu_jax.finetune.training import FullFinetune
    from img2imu_jax.imu.protocol import subject_folds

    windows = tones()
    grid = ((32, 28), (64, 60))
    full = FullFinetune(head_epochs=2, epochs=2, batch_size=4)
    result, models = evaluate(encoder, windows, modes=("linear", "finetune"), shots=(2, 4),
                              folds=3, grid=grid, epochs=3, full=full)
    tested = sum(len(fold.test) for fold in subject_folds(windows, folds=3))
    for mode in ("linear", "finetune"):
        assert set(result[mode]) == {2, 4}
        for summary in result[mode].values():
            assert len(summary["f1"]) == 3 and all(0.0 <= f <= 1.0 for f in summary["f1"])
            assert summary["mean"] == pytest.approx(np.mean(summary["f1"]))
            assert all(tuple(s) in grid for s in summary["settings"])
            assert np.sum(summary["confusion"]) == tested  # every test window once per n
        best = models[mode]
        assert best["shots"] == 4
        assert best["validation_f1"] == max(result[mode][4]["validation_f1"])
        assert best["test_f1"] == result[mode][4]["f1"][best["fold"]]
    # linear heads select the setting; the full fine-tune uses the same one
    assert result["finetune"][4]["settings"] == result["linear"][4]["settings"]
    again, _ = evaluate(encoder, windows, modes=("linear",), shots=(2, 4), folds=3, grid=grid,
                        epochs=3)
    assert again["linear"] == result["linear"]
    with pytest.raises(ValueError, match="modes must be among"):
        evaluate(encoder, windows, modes=("probe",))


def test_sgd_head_follows_momentum_sgd_on_the_softmax_gradient():
    rng = np.random.default_rng(2)
    features = rng.normal(size=(8, 5)).astype(np.float32)
    labels = rng.integers(0, 3, 8)
    rate, momentum = 0.3, 0.9
    head = train_linear_head(features, labels, 3, seed=0, epochs=2, batch_size=8,
                             schedule=optax.constant_schedule(rate), optimizer="sgd",
                             momentum=momentum)
    initial = train_linear_head(features, labels, 3, seed=0, epochs=1, batch_size=8,
                                schedule=optax.constant_schedule(0.0), optimizer="sgd")
    kernel, bias = (np.asarray(p, np.float64) for p in initial)
    onehot = np.eye(3)[labels]
    velocity = [np.zeros_like(kernel), np.zeros_like(bias)]
    for _ in range(2):  # full batch: the shuffle does not matter
        logits = features @ kernel + bias
        probs = np.exp(logits - logits.max(1, keepdims=True))
        probs /= probs.sum(1, keepdims=True)
        delta = (probs - onehot) / len(labels)
        velocity = [momentum * velocity[0] + features.T @ delta,
                    momentum * velocity[1] + delta.sum(0)]
        kernel, bias = kernel - rate * velocity[0], bias - rate * velocity[1]
    np.testing.assert_allclose(head[0], kernel, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(head[1], bias, rtol=1e-4, atol=1e-6)


def test_full_network_step_is_one_sgd_step_of_the_whole_classifier(encoder):
    from img2imu_jax.classifier import Classifier, Frontend
    from img2imu_jax.finetune.training import train_network

    windows = tones(subjects=2, per_subject=4)
    images = Frontend(50.0, 32, 28).images(windows.samples)
    model = Classifier(nnx.clone(encoder), 2, rngs=nnx.Rngs(1))
    reference = nnx.clone(model)
    reference.train()

    def loss_fn(module):
        logits = module(images)
        return optax.softmax_cross_entropy_with_integer_labels(logits, windows.labels).mean()

    grads = nnx.grad(loss_fn)(reference)  # updates reference's BatchNorm statistics too
    expected = jax.tree.map(lambda p, g: p - 0.05 * g, nnx.state(reference, nnx.Param),
                            nnx.state(grads))
    train_network(model, images, windows.labels, seed=0, epochs=1, learning_rate=0.05,
                  batch_size=len(windows))
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6),
                 nnx.state(model, nnx.Param), expected)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6),
                 nnx.state(model, nnx.BatchStat), nnx.state(reference, nnx.BatchStat))
    changed = jax.tree.map(lambda a, b: not np.array_equal(a, b),
                           nnx.state(model.encoder, nnx.Param), nnx.state(encoder, nnx.Param))
    assert all(jax.tree.leaves(changed))  # the whole network trains; the original is intact


def test_a_saved_classifier_loads_to_the_same_function(encoder, tmp_path):
    from img2imu_jax.classifier import (Classifier, Frontend, class_probabilities,
                                        load_classifier, save_classifier)

    windows = tones(subjects=1, per_subject=6).samples
    model = Classifier(encoder, 3, rngs=nnx.Rngs(3))
    frontend = Frontend(50.0, 64, 56)
    expected = class_probabilities(model, frontend, windows)
    manual = jax.nn.softmax(model(normalize_imagenet(spectrogram_image(
        jnp.asarray(windows), sample_rate=50.0, nfft=64, noverlap=56))))
    np.testing.assert_allclose(expected, manual, rtol=1e-4, atol=1e-6)
    save_classifier(tmp_path / "clf", model, frontend, {"classes": ["a", "b", "c"]})
    save_classifier(tmp_path / "clf", model, frontend, {"classes": ["a", "b", "c"]})  # replaces
    loaded, loaded_frontend, meta = load_classifier(tmp_path / "clf")
    assert loaded_frontend == frontend
    assert (meta["width"], meta["classes"]) == (8, ["a", "b", "c"])
    np.testing.assert_allclose(class_probabilities(loaded, loaded_frontend, windows), expected,
                               atol=1e-6)
    with pytest.raises(ValueError, match="not a saved classifier"):
        load_classifier(tmp_path)


FAST = ["--config.model.width=8", "--config.grid_nfft=(64,)", "--config.grid_gaps=(8,)",
        "--config.epochs=2", "--config.shots=(1,2)", "--config.folds=3"]


def tf_value(event):
    from tensorboard.util import tensor_util

    return tensor_util.make_ndarray(event.tensor_proto)


def test_finetune_command_restores_the_encoder_and_writes_the_report(tmp_path, capsys):
    import json

    import jax

    from img2imu_jax import cli
    from img2imu_jax.checkpoint import Checkpointer
    from img2imu_jax.finetune.results import load_encoder
    from img2imu_jax.finetune.config import finetune_base_config

    saved = ResNet(18, width=8, rngs=nnx.Rngs(7))
    checkpoints = Checkpointer(tmp_path / "pre", save_every=1)
    checkpoints.save(1, {"model": {"encoder": nnx.state(saved)}}, {"epoch": [0]})
    checkpoints.wait()
    checkpoints.close()
    config = finetune_base_config()
    config.model.width = 8
    restored = load_encoder(config, str(tmp_path / "pre" / "checkpoints"))
    jax.tree.map(np.testing.assert_array_equal, nnx.state(restored), nnx.state(saved))

    workdir = tmp_path / "ft"
    argv = ["finetune", "--config", "finetune_basicmotions", "--workdir",
            str(workdir), f"--config.pretrained={tmp_path / 'pre' / 'checkpoints'}", *FAST]
    assert cli.main(argv) == 0
    record = json.loads((workdir / "results.json").read_text())
    assert set(record["results"]["linear"]) == {"pre-trained", "random init"}
    assert len(record["results"]["linear"]["pre-trained"]["2"]["f1"]) == 3
    assert set(record["models"]) == {"pre-trained / linear", "random init / linear"}
    table = (workdir / "results.md").read_text()
    assert "| pre-trained |" in table and "| random init |" in table and "2-shot" in table
    assert (workdir / "f1_vs_shots.png").stat().st_size > 1000
    out = capsys.readouterr().out
    assert "results.md" in out
    # Progress over the whole protocol: 2 encoders x 3 folds x 2 shot counts x 1 mode.
    assert "finetune 1/12: pre-trained, linear, fold 0, 1-shot" in out
    assert "finetune 12/12: random init, linear, fold 2, 2-shot" in out and "ETA 0:00:00" in out
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(workdir)).Reload()
    points = events.Tensors("pre-trained/linear/2-shot/test_f1")
    assert [p.step for p in points] == [0, 1, 2]
    np.testing.assert_allclose([float(np.asarray(tf_value(p))) for p in points],
                               record["results"]["linear"]["pre-trained"]["2"]["f1"], rtol=1e-6)

    checkpoints = Checkpointer(tmp_path / "headless", save_every=1)
    checkpoints.save(1, {"model": {"head": {"w": np.zeros(2)}}}, {"epoch": [0]})
    checkpoints.wait()
    checkpoints.close()
    argv[5] = f"--config.pretrained={tmp_path / 'headless' / 'checkpoints'}"
    assert cli.main(argv) == 1
    assert "no model/encoder" in capsys.readouterr().err


def test_finetune_your_own_csv_then_predict_with_the_saved_model(tmp_path, capsys):
    from img2imu_jax import cli
    from img2imu_jax.imu.windows import cut_stream

    rng = np.random.default_rng(0)
    t = np.arange(300) / 50.0
    rows = ["subject,label,x,y,z"]
    for subject in range(6):
        for label, frequency in (("still", 1.0), ("shake", 9.0)):
            xyz = np.sin(2 * np.pi * frequency * t)[:, None] + rng.normal(0, 0.1, (300, 3))
            rows += [f"p{subject},{label},{x:.4f},{y:.4f},{z:.4f}" for x, y, z in xyz]
    data = tmp_path / "mine.csv"
    data.write_text("\n".join(rows) + "\n")
    workdir = tmp_path / "ft"
    argv = ["finetune", "--config", "finetune_basicmotions", "--workdir",
            str(workdir), "--config.data.dataset=generic", f"--config.data.data_dir={data}",
            "--config.data.seconds=2.0", "--config.modes=('linear','finetune')",
            "--config.finetune.epochs=1", "--config.finetune.head_epochs=1", *FAST,
            "--config.shots=(2,)"]  # one shape: one compile of the fine-tune step
    assert cli.main(argv) == 1  # the sample rate is not in the file
    assert cli.main(argv + ["--config.data.generic_sample_rate=50.0"]) == 0
    results = (workdir / "results.md").read_text()
    assert "mine" in results and "full fine-tune" in results and "linear evaluation" in results
    model = workdir / "models" / "random_init-finetune"
    meta = json.loads((model / "classifier.json").read_text())  # enough to cut its fold again
    assert meta["source"] == {"dataset": "generic", "data_dir": str(data),
                              "generic_sample_rate": 50.0, "label_rule": "single"}
    trained, tested = set(meta["train_subjects"]), set(meta["test_subjects"])
    assert trained and tested and trained.isdisjoint(tested)
    assert trained | tested < {f"p{i}" for i in range(6)}  # the validation subjects are neither

    recording = tmp_path / "walk.csv"  # 7 s of 'shake' at 25 Hz, no header
    xyz = np.sin(2 * np.pi * 9.0 * np.arange(175) / 25.0)[:, None] + rng.normal(0, 0.1, (175, 3))
    recording.write_text("".join(f"{x:.4f},{y:.4f},{z:.4f}\n" for x, y, z in xyz))
    capsys.readouterr()
    assert cli.main(["predict", "--checkpoint", str(model), str(recording),
                     "--sample-rate", "25"]) == 0
    out = capsys.readouterr()
    lines = out.out.strip().splitlines()
    _, starts = cut_stream(xyz, 25.0, seconds=2.0)
    assert lines[0] == "start_s,end_s,label,probability" and len(lines) == 1 + len(starts) == 7
    for line, start in zip(lines[1:], starts):
        begin, end, label, probability = line.split(",")
        assert (float(begin), float(end)) == (start, start + 2.0)
        assert label in ("still", "shake") and 0.5 <= float(probability) <= 1.0
    assert "6 windows" in out.err
    assert cli.main(["predict", "--checkpoint", str(workdir), str(recording)]) == 1
    assert "not a saved classifier" in capsys.readouterr().err
    recording.write_text("1,2,3\n4,x,6\n")
    assert cli.main(["predict", "--checkpoint", str(model), str(recording)]) == 1
    assert "walk.csv line 2" in capsys.readouterr().err


def test_cut_stream_cuts_like_the_labelled_windows():
    from img2imu_jax.imu.recordings import IMUDataset, Recording
    from img2imu_jax.imu.windows import cut_stream, make_windows

    samples = np.random.default_rng(4).normal(size=(333, 3)).astype(np.float32)
    dataset = IMUDataset("one", ("a",), (Recording(samples, np.zeros(333, np.int64), "s", 20.0),))
    expected = make_windows(dataset, seconds=2.0, sample_rate=50.0)
    windows, starts = cut_stream(samples, 20.0, seconds=2.0, sample_rate=50.0)
    np.testing.assert_allclose(windows, expected.samples)
    np.testing.assert_allclose(starts, np.arange(len(windows)) * 1.0)  # hop: half of 2 s
    with pytest.raises(ValueError, match="shorter than one 20.0 s window"):
        cut_stream(samples, 20.0, seconds=20.0)


def test_vmapped_learning_rate_grid_equals_one_head_per_rate():
    from img2imu_jax.finetune.training import train_linear_heads

    rng = np.random.default_rng(2)
    labels = np.repeat(np.arange(3), 4)
    features = rng.normal(size=(12, 8)) + np.eye(3, 8)[labels]
    rates = (1e-3, 1e-1)
    heads = train_linear_heads(features, labels, 3, seed=0, epochs=5, learning_rates=rates)
    for lr, (kernel, bias) in zip(rates, heads):
        one = train_linear_head(features, labels, 3, seed=0, epochs=5, learning_rate=lr)
        np.testing.assert_allclose(kernel, one[0], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(bias, one[1], rtol=1e-5, atol=1e-6)


def test_the_tuned_choice_uses_only_validation_subjects():
    from img2imu_jax.finetune.protocol import _best_linear_head

    rng = np.random.default_rng(3)
    labels = np.repeat(np.arange(3), 30)
    centres = rng.normal(size=(3, 12))
    features = {(32, 28): centres[labels] * 0.5 + rng.normal(size=(90, 12)),
                (64, 60): centres[labels] * 1.5 + rng.normal(size=(90, 12))}
    train, validation, test = np.arange(0, 90, 3), np.arange(1, 90, 3), np.arange(2, 90, 3)
    choices = []
    for scramble in (False, True):
        seen = labels.copy()
        if scramble:
            seen[test] = rng.permutation(seen[test])
        for standardize in (False, True):
            setting, lr, head = _best_linear_head(
                features, seen, train, validation, 3, seed=0, epochs=4,
                learning_rates=(1e-4, 1e-2, 1e-1), standardize=standardize)
            choices.append((setting, lr, np.asarray(head[0])))
    for (setting, lr, kernel), (again_setting, again_lr, again) in zip(choices[:2], choices[2:]):
        assert (setting, lr) == (again_setting, again_lr)
        np.testing.assert_array_equal(kernel, again)
    assert choices[0][:2] == ((64, 60), 1e-1)  # the separable setting, a rate that trains


def test_standardised_heads_take_raw_features():
    from img2imu_jax.finetune.protocol import _best_linear_head

    rng = np.random.default_rng(4)
    labels = np.repeat(np.arange(2), 10)
    raw = rng.normal(size=(20, 6)) * 50 + 300 + 40 * labels[:, None]  # large offset and scale
    everything = np.arange(20)
    _, _, head = _best_linear_head({(32, 28): raw}, labels, everything, everything, 2, seed=0,
                                   epochs=20, learning_rates=(1e-2, 1e-1), standardize=True)
    mean, std = raw.mean(axis=0), raw.std(axis=0) + 1e-6
    kernel, bias = head
    # the folded head on raw features computes the same logits as its standardised form
    standardised_kernel = np.asarray(kernel) * std[:, None]
    standardised_bias = np.asarray(bias) + mean @ np.asarray(kernel)
    np.testing.assert_allclose(raw @ np.asarray(kernel) + np.asarray(bias),
                               ((raw - mean) / std) @ standardised_kernel + standardised_bias,
                               rtol=1e-4, atol=1e-3)
    assert macro_f1(labels, predict(head, raw)) == 1.0
