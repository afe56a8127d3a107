"""Linear evaluation: frozen features in one jitted pass, the paper's head schedule, a head
that separates separable features."""

import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from img2imu_jax.finetune import extract_features, linear_schedule, predict, train_linear_head
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


def test_linear_evaluation_runs_the_protocol(encoder):
    from img2imu_jax.finetune import linear_evaluation

    windows = tones()
    grid = ((32, 28), (64, 60))
    result = linear_evaluation(encoder, windows, shots=(1, 4), folds=3, grid=grid, epochs=3)
    assert set(result) == {1, 4}
    for summary in result.values():
        assert len(summary["f1"]) == 3 and all(0.0 <= f <= 1.0 for f in summary["f1"])
        assert summary["mean"] == pytest.approx(np.mean(summary["f1"]))
        assert all(tuple(s) in grid for s in summary["settings"])
    again = linear_evaluation(encoder, windows, shots=(1, 4), folds=3, grid=grid, epochs=3)
    assert again == result


FAST = ["--config.model.width=8", "--config.grid_nfft=(64,)", "--config.grid_gaps=(8,)",
        "--config.epochs=2", "--config.shots=(1,2)", "--config.folds=3"]


def test_finetune_command_restores_the_encoder_and_writes_the_report(tmp_path, capsys):
    import json
    from pathlib import Path

    import jax

    from img2imu_jax import cli
    from img2imu_jax.checkpoint import Checkpointer
    from img2imu_jax.finetune import _encoder
    from img2imu_jax.config import finetune_base_config

    saved = ResNet(18, width=8, rngs=nnx.Rngs(7))
    checkpoints = Checkpointer(tmp_path / "pre", save_every=1)
    checkpoints.save(1, {"model": {"encoder": nnx.state(saved)}}, {"epoch": [0]})
    checkpoints.wait()
    checkpoints.close()
    config = finetune_base_config()
    config.model.width = 8
    restored = _encoder(config, str(tmp_path / "pre" / "checkpoints"))
    jax.tree.map(np.testing.assert_array_equal, nnx.state(restored), nnx.state(saved))

    configs = Path(__file__).resolve().parents[1] / "configs"
    workdir = tmp_path / "ft"
    argv = ["finetune", "--config", str(configs / "finetune_basicmotions.py"), "--workdir",
            str(workdir), f"--config.pretrained={tmp_path / 'pre' / 'checkpoints'}", *FAST]
    assert cli.main(argv) == 0
    record = json.loads((workdir / "results.json").read_text())
    assert set(record["results"]) == {"pre-trained", "random init"}
    assert len(record["results"]["pre-trained"]["2"]["f1"]) == 3
    table = (workdir / "results.md").read_text()
    assert "| pre-trained |" in table and "| random init |" in table and "2-shot" in table
    assert (workdir / "f1_vs_shots.png").stat().st_size > 1000
    assert "results.md" in capsys.readouterr().out

    checkpoints = Checkpointer(tmp_path / "headless", save_every=1)
    checkpoints.save(1, {"model": {"head": {"w": np.zeros(2)}}}, {"epoch": [0]})
    checkpoints.wait()
    checkpoints.close()
    argv[5] = f"--config.pretrained={tmp_path / 'headless' / 'checkpoints'}"
    assert cli.main(argv) == 1
    assert "no model/encoder" in capsys.readouterr().err


def test_finetune_on_your_own_csv(tmp_path):
    from pathlib import Path

    from img2imu_jax import cli

    rng = np.random.default_rng(0)
    t = np.arange(300) / 50.0
    rows = ["subject,label,x,y,z"]
    for subject in range(6):
        for label, frequency in (("still", 1.0), ("shake", 9.0)):
            xyz = np.sin(2 * np.pi * frequency * t)[:, None] + rng.normal(0, 0.1, (300, 3))
            rows += [f"p{subject},{label},{x:.4f},{y:.4f},{z:.4f}" for x, y, z in xyz]
    data = tmp_path / "mine.csv"
    data.write_text("\n".join(rows) + "\n")
    configs = Path(__file__).resolve().parents[1] / "configs"
    argv = ["finetune", "--config", str(configs / "finetune_basicmotions.py"), "--workdir",
            str(tmp_path / "ft"), "--config.data.dataset=generic", f"--config.data.data_dir={data}",
            "--config.data.seconds=2.0", *FAST]
    assert cli.main(argv) == 1  # the sample rate is not in the file
    assert cli.main(argv + ["--config.data.generic_sample_rate=50.0"]) == 0
    assert "mine" in (tmp_path / "ft" / "results.md").read_text()
