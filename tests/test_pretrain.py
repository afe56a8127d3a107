"""The trainer: one step on 8 devices equals one device and pmap; runs end to end; resumes
bit-identically after a real kill; SIGTERM saves and exits 0; config errors come first."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest
from flax import nnx

from img2imu_jax import cli
from img2imu_jax.augment import make_augment
from img2imu_jax.checkpoint import Checkpointer, abstract_like
from img2imu_jax.config import RECIPES as CONFIGS, load_config
from img2imu_jax.methods import build
from img2imu_jax.parallel import data_mesh
from img2imu_jax.pretrain import per_device_step, setup, shard_step

SMALL = ["model.width=8", "data.image_size=(32,48)", "batch_size=16", "moco.queue_size=64",
         "data.shuffle_buffer=32"]


def small_config(method: str, optimizer: str = "sgd", *extra: str):
    overrides = SMALL + [f"method={method}", f"optim.name={optimizer}", "optim.base_lr=0.1",
                         "model.head=" + ("mocov2" if method == "moco" else "simclr"), *extra]
    return load_config(CONFIGS / "demo.py", overrides)


def one_step(config, mesh):
    return setup(config, mesh, steps_per_epoch=5, total_steps=10)


def images(n=16, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, 32, 48, 3), dtype=np.uint8)


# MoCo with Shuffle BN: one global permutation, ghost groups of 4 (a batch of 32 gives every
# device of 8 one group). MoCo without it runs keys and queries through the same global-BN
# `apply_global` as SimCLR's case; its own case was dropped for the suite's time (34 s).
@pytest.mark.parametrize("method, extra", [
    ("simclr", ()),
    ("moco", ("moco.shuffle_bn=True", "moco.bn_group_size=4", "batch_size=32")),
    ("simsiam", ()),
], ids=["simclr", "moco-shuffle-bn", "simsiam"])
def test_eight_devices_equal_one_device(method, extra):
    config = small_config(method, "sgd", *extra)
    batch = images(config.batch_size)
    results = []
    for mesh in (data_mesh(), jax.make_mesh((1,), ("data",), devices=jax.devices()[:1],
                                            axis_types=(jax.sharding.AxisType.Auto,))):
        run = one_step(config, mesh)
        sharded = jax.device_put(batch, jax.sharding.NamedSharding(
            mesh, jax.sharding.PartitionSpec("data")))
        results.append(jax.device_get(run.step_fn(run.state, sharded)))
    (state8, metrics8), (state1, metrics1) = results
    for name in metrics1:
        np.testing.assert_allclose(metrics8[name], metrics1[name], rtol=2e-4, atol=1e-6)
    # SGD moves each parameter by lr × its gradient, so equal parameters mean equal gradients;
    # the BatchNorm statistics are the global batch's on both.
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-3, atol=2e-5),
                 state8, state1)


def test_the_per_device_step_under_pmap_matches_shard_map():
    config = small_config("simclr")
    batch = images()
    run = one_step(config, data_mesh())
    step = per_device_step(run.method, run.tx, run.schedule,
                           make_augment(config.augment.spec))
    state = run.state
    expected_state, expected = jax.device_get(shard_step(step, data_mesh())(
        jax.tree.map(lambda x: x.copy(), state),
        jax.device_put(batch, jax.sharding.NamedSharding(data_mesh(),
                                                         jax.sharding.PartitionSpec("data")))))
    pmapped = jax.pmap(step, axis_name="data", in_axes=(None, 0))
    got_state, got = jax.device_get(pmapped(jax.device_get(state), batch.reshape(8, 2, 32, 48, 3)))
    for name in expected:
        np.testing.assert_allclose(got[name], expected[name][None].repeat(8, 0), rtol=1e-5)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a[0], b, rtol=1e-4, atol=1e-6),
                 got_state, expected_state)


def test_config_errors_come_before_anything_compiles(tmp_path, capsys):
    argv = ["pretrain", "--config", str(CONFIGS / "demo.py"), "--workdir", str(tmp_path)]
    assert cli.main(argv + ["--config.optim.lr=3"]) == 1
    assert "unknown config key 'optim.lr'" in capsys.readouterr().err
    assert cli.main(argv + ["--config.batch_size=lots"]) == 1
    assert "batch_size must be int" in capsys.readouterr().err
    assert cli.main(argv + ["--config.method=byol"]) == 1
    assert "method must be one of moco, simclr, simsiam" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def run_pretrain(workdir: Path, *overrides: str, wait: bool = True, devices: int = 8,
                 extra: tuple = ()):
    command = [sys.executable, "-m", "img2imu_jax.cli", "pretrain", "--config",
               str(CONFIGS / "demo.py"), "--workdir", str(workdir), *extra,
               *[f"--config.{o}" for o in SMALL + ["total_steps=8", "checkpoint_every=2",
                                                   "log_every=1", "probe.eval_every=0",
                                                   "data.data_dir=" +
                                                   str(workdir.parent / "tfds"), *overrides]]]
    # Later runs reuse the first run's compiled programs: the same executables, sooner.
    env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
               JAX_COMPILATION_CACHE_DIR=str(COMPILE_CACHE))
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True)
    if wait:
        output = process.communicate(timeout=600)[0]
        assert process.returncode == 0, output
        return output
    return process


def final_state(workdir: Path):
    step_dirs = sorted((workdir / "checkpoints").glob("[0-9]*"), key=lambda p: int(p.name))
    checkpoints = Checkpointer(workdir, save_every=1)
    import orbax.checkpoint as ocp

    tree = ocp.PyTreeCheckpointHandler().metadata(step_dirs[-1] / "state").tree
    one = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    step, state, data = checkpoints.restore(abstract_like(tree, one))
    checkpoints.close()
    return step, jax.device_get(state), data


def wait_for_checkpoint(workdir: Path, step: int, process):
    deadline = time.monotonic() + 300
    while not (workdir / "checkpoints" / str(step)).is_dir():
        assert process.poll() is None, process.communicate()[0]
        assert time.monotonic() < deadline
        time.sleep(0.2)


COMPILE_CACHE = Path()


@pytest.fixture(scope="module", autouse=True)
def compile_cache(tmp_path_factory):
    global COMPILE_CACHE
    COMPILE_CACHE = tmp_path_factory.mktemp("jax_cache")


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("runs") / "straight"
    output = run_pretrain(workdir)
    return workdir, output


def test_a_run_writes_checkpoints_metrics_and_a_progress_line(uninterrupted):
    workdir, output = uninterrupted
    assert "step 8/8" in output and "ETA" in output
    lines = (workdir / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 8
    assert any(p.name.startswith("events.out.tfevents") for p in workdir.iterdir())
    step, state, data = final_state(workdir)
    assert step == 8 and int(state["train"]["step"]) == 8
    assert set(state["model"]) == {"encoder", "head"}
    assert set(data) == {"epoch", "position"}


def test_a_killed_run_resumes_bit_identically(uninterrupted, tmp_path):
    straight, _ = uninterrupted
    workdir = tmp_path / "killed"
    process = run_pretrain(workdir, wait=False)
    wait_for_checkpoint(workdir, 4, process)
    process.send_signal(signal.SIGKILL)
    process.wait()
    output = run_pretrain(workdir)
    assert "resumed from step" in output or "resumed" in output.lower()
    expected, got = final_state(straight)[1], final_state(workdir)[1]
    jax.tree.map(np.testing.assert_array_equal, got, expected)


def test_sigterm_saves_at_the_next_step_and_exits_zero(uninterrupted, tmp_path):
    straight, _ = uninterrupted
    workdir = tmp_path / "preempted"
    process = run_pretrain(workdir, wait=False)
    wait_for_checkpoint(workdir, 2, process)
    process.send_signal(signal.SIGTERM)
    output = process.communicate(timeout=300)[0]
    assert process.returncode == 0, output
    assert "preempted" in output
    stopped_at = final_state(workdir)[0]
    assert stopped_at < 8
    run_pretrain(workdir)
    jax.tree.map(np.testing.assert_array_equal, final_state(workdir)[1],
                 final_state(straight)[1])


def test_the_probe_logs_few_shot_f1_and_leaves_training_bit_identical(uninterrupted, tmp_path):
    straight, _ = uninterrupted
    workdir = tmp_path / "probed"
    output = run_pretrain(workdir, "probe.eval_every=4", "probe.folds=3")
    jax.tree.map(np.testing.assert_array_equal, final_state(workdir)[1],
                 final_state(straight)[1])
    rows = {}  # a step logged before its probe ran has its probe row after it
    for line in (workdir / "metrics.jsonl").read_text().splitlines():
        row = json.loads(line)
        rows.setdefault(row["step"], {}).update(row)
    probed = {step: row for step, row in rows.items() if "probe/f1_10shot" in row}
    assert sorted(probed) == [0, 4, 8]  # the random-init reference, every 4 steps, the end
    assert "loss" not in probed[0] and "loss" in probed[4]
    for row in probed.values():
        assert 0 < row["probe/f1_1shot"] <= 1 and 0 < row["probe/f1_10shot"] <= 1
    assert "step 0/8: probe macro-F1 % 1shot" in output


def test_the_fine_tune_loop_can_restore_just_the_encoder(uninterrupted):
    from img2imu_jax.checkpoint import restore_encoder

    workdir, _ = uninterrupted
    config = load_config(CONFIGS / "demo.py", SMALL)
    one = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    encoder = nnx.eval_shape(lambda: build(config)).encoder
    abstract = abstract_like(nnx.state(encoder), one)
    restored = by_name(restore_encoder(workdir / "checkpoints", abstract))
    expected = by_name(final_state(workdir)[1]["model"]["encoder"])
    assert restored.keys() == expected.keys() and len(expected) > 40
    for name, value in expected.items():
        np.testing.assert_array_equal(restored[name], value, err_msg=name)


def by_name(tree) -> dict[str, np.ndarray]:
    """Leaves keyed by their dotted path, whatever kind of mapping holds them."""
    flat = jax.tree_util.tree_flatten_with_path(jax.device_get(tree))[0]
    return {".".join(str(getattr(k, "key", getattr(k, "name", k))) for k in path): np.asarray(v)
            for path, v in flat}


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("localhost", 0))
        return probe.getsockname()[1]


def test_two_processes_on_localhost_match_one_process(tmp_path):
    """2 processes × 2 CPU devices (gloo collectives) against 1 process × 4 devices.

    Every image is the same photo, so each process's share makes the same global batch
    whatever order it is read in; the trainer checks at every checkpoint that both processes
    hold identical parameters.
    """
    from PIL import Image

    from img2imu_jax.images.sources import bundled_photo_paths

    photos = tmp_path / "photos"
    photos.mkdir()
    photo = Image.open(next(p for p in bundled_photo_paths() if p.stem == "coffee"))
    for i in range(32):
        photo.convert("RGB").save(photos / f"coffee{i:02d}.jpg")
    # SGD: parameter differences stay proportional to gradient differences (Adam's normalised
    # steps would turn rounding in near-zero gradients into full-size steps).
    common = ["total_steps=3", "checkpoint_every=3", f"data.dataset={photos}", "optim.name=sgd",
              "optim.base_lr=0.05"]
    port = free_port()
    workers = [
        run_pretrain(tmp_path / "two", *common, wait=False, devices=2,
                     extra=["--coordinator", f"localhost:{port}", "--num-processes", "2",
                            "--process-id", str(i)])
        for i in range(2)
    ]
    for worker in workers:
        output = worker.communicate(timeout=600)[0]
        assert worker.returncode == 0, output
    run_pretrain(tmp_path / "one", *common, devices=4)
    two, one = final_state(tmp_path / "two"), final_state(tmp_path / "one")
    assert two[0] == one[0] == 3
    assert len(two[2]["position"]) == 2 and len(one[2]["position"]) == 1
    # gloo sums in another order, and three steps of a contrastive loss on 16 images carry
    # that rounding forward; so compare what training changed: each tensor's update must agree
    # to 2 %, where a wrong gradient average or missing negatives would be off by ~100 %.
    start = by_name(nnx.state(build(load_config(CONFIGS / "demo.py", SMALL + common))))
    two_params, one_params = by_name(two[1]["model"]), by_name(one[1]["model"])
    for name, value in one_params.items():
        update = value - start[name]
        if np.linalg.norm(update) > 1e-6:
            gap = np.linalg.norm(two_params[name] - value) / np.linalg.norm(update)
            assert gap < 0.02, f"{name}: updates differ by {gap:.1%}"


def test_a_non_finite_loss_stops_naming_the_step_and_keeps_the_last_checkpoint(
    uninterrupted, tmp_path
):
    straight, _ = uninterrupted
    workdir = tmp_path / "diverged"
    shutil.copytree(straight, workdir)  # a finished run, checkpoint 8, continued to step 10
    # A temperature below float32's normal range turns the logits into inf and the loss NaN.
    process = run_pretrain(workdir, "total_steps=10", "temperature=1e-40", wait=False,
                           extra=("--allow-config-change",))
    output = process.communicate(timeout=600)[0]
    assert process.returncode == 1, output
    assert "loss is nan at step 9" in output
    assert final_state(workdir)[0] == 8


COLLECTIVES = re.compile(r"\b(all-reduce|all-gather|reduce-scatter|collective-permute|all-to-all)"
                         r"(-start)?\(")


@pytest.mark.parametrize("method", ["simclr", "moco"])
def test_a_one_device_step_compiles_to_no_collectives(method):
    config = small_config(method)
    batch = images()
    one = jax.make_mesh((1,), ("data",), devices=jax.devices()[:1],
                        axis_types=(jax.sharding.AxisType.Auto,))
    counts = {}
    for name, mesh in (("one", one), ("eight", data_mesh())):
        run = one_step(config, mesh)
        sharded = jax.device_put(batch, jax.sharding.NamedSharding(
            mesh, jax.sharding.PartitionSpec("data")))
        lowered = run.step_fn.lower(run.state, sharded)
        # The eight-device control only needs lowering: the collectives are there before XLA.
        text = lowered.compile().as_text() if name == "one" else lowered.as_text()
        counts[name] = len(re.findall(
            COLLECTIVES if name == "one" else r"stablehlo\.(all_reduce|all_gather)", text))
    assert counts["one"] == 0
    assert counts["eight"] > 10  # global BatchNorm alone averages over devices in every layer
