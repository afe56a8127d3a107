"""Checkpoints: round trips, async saves and retention, resharding, broken steps, encoder-only."""

import gc
import logging
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest
from jax.sharding import NamedSharding, PartitionSpec, SingleDeviceSharding

from img2imu_jax.checkpoint import (
    BROKEN,
    CHECKPOINTS,
    Checkpointer,
    abstract_like,
    restore_encoder,
)
from img2imu_jax.parallel import DATA_AXIS, data_mesh

DATA = {"epoch": [0, 1], "position": [96, 128], "note": {"seed": 3}}

# When a restore fails, Orbax abandons its other pending reads; Python reports each abandoned
# coroutine once it is collected. Collect them inside the test that caused them, and hush them.
pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


@pytest.fixture(autouse=True)
def collect_abandoned_reads():
    yield
    gc.collect()


@pytest.fixture(scope="module")
def mesh():
    assert jax.device_count() == 8, "tests/conftest.py sets up 8 CPU devices"
    return data_mesh()


def make_state(mesh=None, seed=0):
    """A small training state: replicated params, a `'data'`-split queue, a typed key.

    With no mesh every array sits on one device.
    """
    put = (lambda x, spec: jax.device_put(x, NamedSharding(mesh, spec))) if mesh else (
        lambda x, spec: jax.device_put(x, SingleDeviceSharding(jax.devices()[0])))
    rng = np.random.default_rng(seed)
    normal = lambda *shape: rng.normal(size=shape).astype(np.float32)  # noqa: E731
    params = {"conv": {"kernel": normal(3, 3, 3, 8)}, "bn": {"scale": np.ones(8, np.float32)}}
    return {
        "model": {
            "encoder": jax.tree.map(lambda x: put(x, PartitionSpec()), params),
            "head": {"kernel": put(normal(8, 4), PartitionSpec())},
        },
        "opt_state": {"mu": jax.tree.map(lambda x: put(np.zeros_like(x), PartitionSpec()),
                                         params)},
        "train": {
            "step": put(np.int32(seed), PartitionSpec()),
            "key": put(jax.random.key(seed), PartitionSpec()),
            "example_keys": put(jax.random.split(jax.random.key(seed + 1), 8),
                                PartitionSpec(DATA_AXIS)),
            "queue": put(normal(16, 4), PartitionSpec(DATA_AXIS)),
            "queue_ptr": put(np.int32(4), PartitionSpec()),
        },
    }


def abstract_of(state):
    """The target with each array's own sharding, as a resumed run on the same devices builds it."""
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding),
                        state)


def assert_same(restored, expected, abstract):
    """Same structure, values (keys compared by their data), dtypes and the target's shardings."""
    assert jax.tree.structure(restored) == jax.tree.structure(expected)
    for got, want, target in zip(jax.tree.leaves(restored), jax.tree.leaves(expected),
                                 jax.tree.leaves(abstract)):
        assert got.dtype == want.dtype
        if jax.dtypes.issubdtype(want.dtype, jax.dtypes.prng_key):
            got, want = jax.random.key_data(got), jax.random.key_data(want)
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
        assert got.sharding.is_equivalent_to(target.sharding, got.ndim)


def save_steps(tmp_path, steps, *, keep=3, mesh=None, save_every=10):
    with_steps = {step: make_state(mesh, seed=step) for step in steps}
    checkpoints = Checkpointer(tmp_path, save_every=save_every, keep=keep)
    for step, state in with_steps.items():
        assert checkpoints.save(step, state, {**DATA, "step": step})
    checkpoints.close()
    return with_steps


def test_round_trip_keeps_keys_typed_and_stores_their_data(tmp_path, mesh):
    state = make_state(mesh, seed=7)
    checkpoints = Checkpointer(tmp_path, save_every=1)
    assert checkpoints.restore(abstract_of(state)) is None
    assert checkpoints.save(7, state, DATA)
    checkpoints.wait()
    step, restored, data = checkpoints.restore(abstract_of(state))
    checkpoints.close()

    assert step == 7 and data == DATA
    assert_same(restored, state, abstract_of(state))
    assert restored["train"]["key"].dtype == jax.random.key(0).dtype
    # On disk a key is its raw uint32 data, readable with Orbax alone.
    saved = ocp.PyTreeCheckpointHandler().metadata(tmp_path / CHECKPOINTS / "7" / "state").tree
    assert saved["train"]["key"].dtype == np.uint32 and saved["train"]["key"].shape == (2,)
    assert saved["train"]["example_keys"].shape == (8, 2)


def test_async_saves_every_n_force_at_the_end_keep_last_k(tmp_path):
    checkpoints = Checkpointer(tmp_path, save_every=2, keep=2)
    saved = []
    for step in range(1, 8):
        state = make_state(seed=step)
        if checkpoints.save(step, state, {"position": [step]}):
            saved.append(step)
        for leaf in jax.tree.leaves(state):  # as a donating train step would
            leaf.delete()
    assert saved == [2, 4, 6]
    assert checkpoints.save(7, make_state(seed=7), {"position": [7]}, force=True)
    assert not checkpoints.save(7, make_state(seed=7), {"position": [7]}, force=True)
    checkpoints.wait()
    assert checkpoints.latest_step() == 7
    assert sorted(p.name for p in (tmp_path / CHECKPOINTS).iterdir()) == ["6", "7"]

    target = abstract_of(make_state())
    for step in (6, 7):
        restored_step, restored, data = checkpoints.restore(target, step=step)
        assert restored_step == step and data == {"position": [step]}
        assert_same(restored, make_state(seed=step), target)
    checkpoints.close()


@pytest.mark.parametrize("written, read", [("8", "1"), ("8", "8"), ("1", "8")])
def test_restore_onto_other_devices(tmp_path, mesh, written, read):
    state = make_state(mesh if written == "8" else None, seed=3)
    checkpoints = Checkpointer(tmp_path, save_every=1)
    checkpoints.save(3, state, DATA)
    checkpoints.close()

    target = abstract_of(make_state(mesh if read == "8" else None))
    step, restored, _ = Checkpointer(tmp_path, save_every=1).restore(target)
    assert step == 3
    assert_same(restored, state, target)
    queue = restored["train"]["queue"]
    assert len(queue.sharding.device_set) == (8 if read == "8" else 1)


def truncate(path, size=7):
    with open(path, "r+b") as f:
        f.truncate(size)


def damage_metadata(step_dir):
    truncate(step_dir / "state" / "_METADATA")


def damage_arrays(step_dir):
    for path in step_dir.glob("state/**/d/*"):
        truncate(path)


def delete_arrays(step_dir):
    for path in step_dir.glob("state/**/d/*"):
        path.unlink()


def delete_data(step_dir):
    (step_dir / "data" / "metadata").unlink()


@pytest.mark.parametrize("damage", [damage_metadata, damage_arrays, delete_arrays, delete_data])
def test_damaged_latest_step_is_moved_aside_and_the_previous_one_restored(
        tmp_path, damage, caplog):
    states = save_steps(tmp_path, [10, 20, 30], keep=2)
    root = tmp_path / CHECKPOINTS
    assert sorted(p.name for p in root.iterdir()) == ["20", "30"]
    damage(root / "30")
    target = abstract_of(make_state())

    checkpoints = Checkpointer(tmp_path, save_every=10, keep=2)
    with pytest.raises(ValueError, match="step 30"):  # asked for by name: an error, no fallback
        checkpoints.restore(target, step=30)
    assert (root / "30").exists()
    with caplog.at_level(logging.WARNING, logger="img2imu_jax.checkpoint"):
        step, restored, data = checkpoints.restore(target)
    assert step == 20 and data["step"] == 20
    assert_same(restored, states[20], target)
    assert "step 30" in caplog.text and "resuming from step 20" in caplog.text
    assert not (root / "30").exists() and (root / BROKEN / "30" / "state").is_dir()

    # The run goes on: step 30 is written again, and step 20 is still there to fall back on.
    assert checkpoints.save(30, make_state(seed=31), DATA)
    checkpoints.wait()
    assert sorted(p.name for p in root.iterdir()) == ["20", "30", BROKEN]
    assert checkpoints.restore(target, step=20)[0] == 20
    assert_same(checkpoints.restore(target)[1], make_state(seed=31), target)
    checkpoints.close()


def test_interrupted_save_leftover_is_moved_aside(tmp_path, caplog):
    states = save_steps(tmp_path, [10, 20], keep=2)
    root = tmp_path / CHECKPOINTS
    leftover = root / f"30{ocp.step.TMP_DIR_SUFFIX}"  # what a killed async save leaves
    shutil.copytree(root / "20", leftover)
    (leftover / "commit_success.txt").unlink()
    delete_arrays(leftover)
    target = abstract_of(make_state())

    checkpoints = Checkpointer(tmp_path, save_every=10, keep=2)
    assert checkpoints.latest_step() == 20
    with caplog.at_level(logging.WARNING, logger="img2imu_jax.checkpoint"):
        step, restored, _ = checkpoints.restore(target)
    assert step == 20
    assert_same(restored, states[20], target)
    assert "step 30" in caplog.text and "never finished" in caplog.text
    assert (root / BROKEN / leftover.name).is_dir() and not leftover.exists()

    assert checkpoints.save(30, make_state(seed=30), DATA)
    checkpoints.wait()
    assert sorted(p.name for p in root.iterdir()) == ["20", "30", BROKEN]
    checkpoints.close()


def test_a_wrong_target_moves_nothing(tmp_path):
    save_steps(tmp_path, [10, 20])
    wrong = abstract_of(make_state())
    wrong["model"]["head"]["kernel"] = abstract_like(jnp.zeros((8, 5)),
                                                     SingleDeviceSharding(jax.devices()[0]))
    checkpoints = Checkpointer(tmp_path, save_every=10)
    with pytest.raises(ValueError, match="step 20"):
        checkpoints.restore(wrong)
    assert sorted(p.name for p in (tmp_path / CHECKPOINTS).iterdir()) == ["10", "20"]
    with pytest.raises(ValueError, match="no sharding"):
        checkpoints.restore(jax.eval_shape(make_state))
    checkpoints.close()


def test_restore_encoder_reads_only_the_encoder(tmp_path, mesh):
    state = make_state(mesh, seed=5)
    big = {"kernel": jnp.ones((512, 512)), "bias": jnp.zeros(512)}
    state["opt_state"] = optax.adamw(1e-3).init(big)  # namedtuples the fine-tune loop never sees
    checkpoints = Checkpointer(tmp_path, save_every=1)
    checkpoints.save(5, state, DATA)
    checkpoints.close()

    target = abstract_like(state["model"]["encoder"], SingleDeviceSharding(jax.devices()[0]))
    encoder = restore_encoder(tmp_path / CHECKPOINTS, target)
    assert_same(encoder, state["model"]["encoder"], target)
    split = abstract_like(state["model"]["encoder"], NamedSharding(mesh, PartitionSpec()))
    assert_same(restore_encoder(tmp_path / CHECKPOINTS, split, step=5),
                state["model"]["encoder"], split)

    smaller = {"conv": target["conv"]}
    with pytest.raises(ValueError, match="bn"):
        restore_encoder(tmp_path / CHECKPOINTS, smaller)
    with pytest.raises(ValueError, match="step 6"):
        restore_encoder(tmp_path / CHECKPOINTS, target, step=6)
    with pytest.raises(ValueError, match="no finished checkpoint"):
        restore_encoder(tmp_path, target)
    damage_arrays(tmp_path / CHECKPOINTS / "5")
    with pytest.raises(ValueError, match="cannot re.*checkpoints/5/state"):
        restore_encoder(tmp_path / CHECKPOINTS, target)


def test_data_must_be_json(tmp_path):
    checkpoints = Checkpointer(tmp_path, save_every=1)
    with pytest.raises(ValueError, match="JSON"):
        checkpoints.save(1, make_state(), {"position": np.int64(3)})
    assert checkpoints.latest_step() is None
    checkpoints.close()


def test_relative_work_directories_save_and_restore(tmp_path, monkeypatch):
    """`--workdir runs/x` is what users type; Orbax itself only takes absolute paths."""
    monkeypatch.chdir(tmp_path)
    state = make_state(seed=3)
    checkpoints = Checkpointer("runs/x", save_every=1)
    checkpoints.save(1, state, DATA)
    checkpoints.wait()
    one = SingleDeviceSharding(jax.devices()[0])
    step, restored, _ = checkpoints.restore(abstract_like(state, one))
    checkpoints.close()
    assert step == 1
    target = abstract_like(state["model"]["encoder"], one)
    encoder = restore_encoder(f"runs/x/{CHECKPOINTS}", target)
    assert_same(encoder, state["model"]["encoder"], target)
    assert (tmp_path / "runs" / "x" / CHECKPOINTS / "1").is_dir()
