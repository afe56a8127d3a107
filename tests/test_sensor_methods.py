"""The 1D sensor methods on the shared trainer: each pre-trains on BasicMotions windows, saves
the corpus's normalisation with its checkpoints and resumes bit-identically; and the pieces
of their losses that are theirs (which windows each multi-task head sees)."""

from __future__ import annotations

import shutil

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
from flax import nnx

from img2imu_jax.checkpoint import (Checkpointer, abstract_like, restore_encoder,
                                    saved_input_stats)
from img2imu_jax.config import load_config
from img2imu_jax.imu.basicmotions import load_basicmotions
from img2imu_jax.imu.window_batches import HostWindows, pretraining_corpus
from img2imu_jax.imu.windows import make_windows
from img2imu_jax.methods.cpc_1d import ContextPredictor, future_latents
from img2imu_jax.methods.multitask_1d import task_decisions
from img2imu_jax.models import SensorCNN, build_encoder
from img2imu_jax.pretrain import train

TINY = ["batch_size=16", "data.seconds=2.0", "model.fc_features=16", "model.out_features=8",
        "model.hidden_features=16", "multitask_1d.hidden_features=8",
        # Three tasks, not eight, for the suite's time (every task is another forward pass).
        "multitask_1d.transforms=rotation|permutation|time_warp", "cpc_1d.steps=4",
        "cpc_1d.context_features=8", "cpc_1d.context_layers=1", "total_steps=4",
        "checkpoint_every=2", "log_every=1", "evals.probe.every=0"]


def saved_state(workdir):
    checkpoints = Checkpointer(workdir, save_every=1)
    step = checkpoints.latest_step()
    path = workdir / "checkpoints" / str(step) / "state"
    tree = ocp.PyTreeCheckpointHandler().metadata(path).tree
    one = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    _, state, data = checkpoints.restore(abstract_like(tree, one))
    checkpoints.close()
    return step, jax.device_get(state), data


def flat(tree) -> dict[tuple[str, ...], np.ndarray]:
    """Leaves by path as a checkpoint names them: list indices as strings, no `value`."""
    return {tuple(str(key.key) for key in path if key.key != "value"): np.asarray(value)
            for path, value in jax.tree_util.tree_flatten_with_path(tree)[0]}


# SimCLR also runs the 1D probe (folds of BasicMotions cases, at steps 0, 2 and 4).
@pytest.mark.parametrize("recipe, extra", [
    ("simclr_1d", ("evals.probe.every=2", "evals.probe.folds=3", "evals.probe.shots=(1,)")),
    ("multitask_1d", ()),
    ("cpc_1d", ()),
])
def test_a_1d_method_pretrains_saves_its_input_statistics_and_resumes_exactly(
        recipe, extra, tmp_path):
    config = load_config(recipe, TINY + ["compilation_cache_dir=" + str(tmp_path / "cache"),
                                         *extra])
    workdir = tmp_path / "run"
    metrics = train(config, workdir)
    assert np.isfinite(metrics["loss"])
    step, straight, data = saved_state(workdir)
    assert step == 4 and set(data) == {"epoch", "position"}
    assert set(straight["model"]) == {"encoder", "head"}

    # The normalisation is the corpus's: every sample of BasicMotions's 2 s windows.
    samples = make_windows(load_basicmotions(), seconds=2.0).samples.reshape(-1, 3)
    mean, std = saved_input_stats(workdir / "checkpoints")
    np.testing.assert_allclose(mean, samples.mean(0), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(std, samples.std(0), rtol=1e-4)

    # Fine-tuning's door: the encoder alone into a freshly built 1D encoder.
    encoder = build_encoder("sensor_cnn", fc_features=16, rngs=nnx.Rngs(1))
    one = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    nnx.update(encoder, restore_encoder(workdir / "checkpoints",
                                        abstract_like(nnx.state(encoder), one)))
    assert isinstance(encoder, SensorCNN)
    restored, saved = flat(nnx.to_pure_dict(nnx.state(encoder))), flat(straight["model"]["encoder"])
    assert restored.keys() == saved.keys() and len(saved) == 8  # 3 convs and the FC, 2 each
    for path, value in restored.items():
        np.testing.assert_array_equal(value, saved[path])

    # A run killed after its step-2 save resumes there and ends where the straight run did.
    shutil.rmtree(workdir / "checkpoints" / "4")
    train(config, workdir)
    jax.tree.map(np.testing.assert_array_equal, saved_state(workdir)[1], straight)


def test_window_batches_cover_an_epoch_once_and_resume_mid_epoch():
    windows = np.arange(23, dtype=np.float32)[:, None, None] * np.ones((1, 4, 3), np.float32)
    host = iter(HostWindows(windows, batch_size=5, seed=3, process_index=0, process_count=1))
    first = [next(host) for _ in range(6)]
    epoch0 = np.concatenate([batch[:, 0, 0] for batch, _ in first[:4]])
    assert len(set(epoch0.tolist())) == 20  # 4 batches of distinct windows, 3 left out
    assert [state for _, state in first[3:5]] == [{"epoch": 0, "position": 20},
                                                  {"epoch": 1, "position": 5}]
    resumed = iter(HostWindows(windows, batch_size=5, seed=3, state=first[1][1],
                               process_index=0, process_count=1))
    for batch, state in first[2:]:
        got, got_state = next(resumed)
        np.testing.assert_array_equal(got, batch)
        assert got_state == state
    shares = [HostWindows(windows, batch_size=5, seed=3, process_index=i, process_count=2)
              for i in range(2)]
    assert [s.records_per_epoch for s in shares] == [11, 11]
    assert not set(shares[0].windows[:, 0, 0]) & set(shares[1].windows[:, 0, 0])


def test_each_multitask_head_is_scored_on_the_originals_and_its_own_transformation():
    n, tasks = 2, 3
    # Row r, column j: which input block r comes from (0 = originals, 1 + t = task t) and the
    # head j, encoded as 10 · block + j.
    blocks = np.repeat(np.arange(tasks + 1), n)
    logits = (10.0 * blocks[:, None] + np.arange(tasks)[None, :]).astype(np.float32)
    decisions, labels = task_decisions(logits, n)
    np.testing.assert_array_equal(decisions[:n], [[0, 1, 2]] * n)
    np.testing.assert_array_equal(decisions[n:], [[10, 21, 32]] * n)  # head t on block 1 + t
    np.testing.assert_array_equal(labels, [[0] * tasks] * n + [[1] * tasks] * n)


def test_a_corpus_of_several_datasets_and_a_mismatched_folder_list():
    config = load_config("simclr_1d", ["data.dataset=basicmotions,basicmotions",
                                       "data.seconds=5.0"])
    corpus = pretraining_corpus(config.data)
    assert corpus.sources == ("basicmotions", "basicmotions") and len(corpus) == 2 * 240
    config.data.data_dir = "a,b,c"
    with pytest.raises(ValueError, match="lists 3 folder"):
        pretraining_corpus(config.data)
    with pytest.raises(ValueError, match="must name datasets among"):
        load_config("cpc_1d", ["data.dataset=imagenet2012"])
    with pytest.raises(ValueError, match="needs model.encoder 'sensor_cnn'"):
        load_config("cpc_1d", ["model.encoder=resnet"])


def test_cpc_targets_are_the_next_k_latents_and_its_context_network_is_causal():
    latents = np.arange(2 * 10 * 3, dtype=np.float32).reshape(2, 10, 3)
    targets = np.asarray(future_latents(latents, np.int32(4), 3))
    for k in range(3):
        np.testing.assert_array_equal(targets[k], latents[:, 4 + 1 + k])
    head = ContextPredictor(3, context_features=5, layers=2, steps=3, dtype=np.float32,
                            rngs=nnx.Rngs(0))
    x = np.asarray(jax.random.normal(jax.random.key(0), (2, 10, 3)))
    changed = x.copy()
    changed[:, 6:] += 1.0  # the future after step 5
    before, after = np.asarray(head(x)), np.asarray(head(changed))
    np.testing.assert_allclose(after[:, :6], before[:, :6], rtol=1e-6)
    assert not np.allclose(after[:, 6:], before[:, 6:])
    assert head.predict(before[:, 5]).shape == (3, 2, 3)
