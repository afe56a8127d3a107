"""Whole pre-training runs, as `img2imu pretrain` subprocesses: a run writes checkpoints, metrics
and the probe's rows; SIGTERM saves and exits 0; a real kill and two resumes end bit-identical
to a straight run; two processes match one, and survive preemptions and a dead peer across
relaunches; a non-finite loss stops at its step."""

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

from img2imu_jax.checkpoint import Checkpointer, abstract_like
from img2imu_jax.config import RECIPES as CONFIGS, load_config
from img2imu_jax.methods import build

SMALL = ["model.width=8", "data.image_size=(32,48)", "batch_size=16", "moco.queue_size=64",
         "data.shuffle_buffer=32"]
# The straight run probes at steps 0, 4 and 8; every other run has the probe off, so the
# resumed runs matching it bit for bit also shows that the probe leaves training unchanged.
PROBED = ("evals.probe.every=4", "evals.probe.folds=3")


def run_pretrain(workdir: Path, *overrides: str, wait: bool = True, devices: int = 8,
                 extra: tuple = ()):
    command = [sys.executable, "-m", "img2imu_jax.cli", "pretrain", "--config",
               str(CONFIGS / "demo.py"), "--workdir", str(workdir), *extra,
               *[f"--config.{o}" for o in SMALL + ["total_steps=8", "checkpoint_every=2",
                                                   "log_every=1", "evals.probe.every=0",
                                                   "evals.val_probe.every=0",
                                                   "data.data_dir=" + str(DATA_DIR), *overrides]]]
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


def final_state(workdir: Path, step: int | None = None):
    """(step, state, data) of the newest checkpoint, or of `step`."""
    step_dirs = sorted((p for p in (workdir / "checkpoints").iterdir() if p.name.isdigit()),
                       key=lambda p: int(p.name))
    checkpoints = Checkpointer(workdir, save_every=1)
    import orbax.checkpoint as ocp

    tree = ocp.PyTreeCheckpointHandler().metadata(step_dirs[-1] / "state").tree
    one = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    step, state, data = checkpoints.restore(abstract_like(tree, one), step=step)
    checkpoints.close()
    return step, jax.device_get(state), data


def wait_for_checkpoint(workdir: Path, step: int, process):
    deadline = time.monotonic() + 300
    while not (workdir / "checkpoints" / str(step)).is_dir():
        assert process.poll() is None, process.communicate()[0]
        assert time.monotonic() < deadline
        time.sleep(0.2)


COMPILE_CACHE = DATA_DIR = Path()


@pytest.fixture(scope="module", autouse=True)
def shared_dirs(tmp_path_factory):
    """One compilation cache and one prepared TFDS copy of the photos for every run here."""
    global COMPILE_CACHE, DATA_DIR
    COMPILE_CACHE = tmp_path_factory.mktemp("jax_cache")
    DATA_DIR = tmp_path_factory.mktemp("tfds")


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("runs") / "straight"
    output = run_pretrain(workdir, *PROBED)
    return workdir, output


def test_a_run_writes_checkpoints_metrics_probe_rows_and_a_progress_line(uninterrupted):
    workdir, output = uninterrupted
    assert "step 8/8" in output and "ETA" in output
    assert "step 0/8: probe macro-F1 % 1shot" in output
    assert any(p.name.startswith("events.out.tfevents") for p in workdir.iterdir())
    rows = {}  # a step logged before its probe ran has its probe row after it
    for line in (workdir / "metrics.jsonl").read_text().splitlines():
        row = json.loads(line)
        rows.setdefault(row["step"], {}).update(row)
    assert sorted(rows) == list(range(9))
    probed = {step: row for step, row in rows.items() if "probe/f1_10shot" in row}
    assert sorted(probed) == [0, 4, 8]  # the random-init reference, every 4 steps, the end
    assert "loss" not in probed[0] and "loss" in probed[4]
    for row in probed.values():
        assert 0 < row["probe/f1_1shot"] <= 1 and 0 < row["probe/f1_10shot"] <= 1
    step, state, data = final_state(workdir)
    assert step == 8 and int(state["train"]["step"]) == 8
    assert set(state["model"]) == {"encoder", "head"}
    assert set(data) == {"epoch", "position"}


def test_sigterm_then_a_kill_then_resumes_end_bit_identical_to_the_probed_straight_run(
        uninterrupted, tmp_path):
    straight, _ = uninterrupted
    workdir = tmp_path / "interrupted"
    process = run_pretrain(workdir, wait=False)
    wait_for_checkpoint(workdir, 2, process)
    process.send_signal(signal.SIGTERM)  # a preemption: save at the next step, exit 0
    output = process.communicate(timeout=300)[0]
    assert process.returncode == 0, output
    assert "preempted" in output
    stopped_at = final_state(workdir)[0]
    assert 2 < stopped_at < 8

    # Resumes, then dies without saving after its first checkpoint (the straight run's last
    # step is 8: a SIGTERM that landed late leaves no room, and the kill is left out).
    killed_after = stopped_at + 2 - stopped_at % 2
    if killed_after < 8:
        process = run_pretrain(workdir, wait=False)
        wait_for_checkpoint(workdir, killed_after, process)
        process.send_signal(signal.SIGKILL)
        process.wait()
    output = run_pretrain(workdir)
    assert "resumed" in output.lower()
    jax.tree.map(np.testing.assert_array_equal, final_state(workdir)[1],
                 final_state(straight)[1])


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


# Two processes × 2 CPU devices over loopback (gloo collectives). Every image is the same photo,
# so each process's share makes the same global batch whatever order it is read in, as one
# process's does: the pair can be compared with one process. SGD: parameter differences stay
# proportional to gradient differences (Adam's normalised steps would turn rounding in
# near-zero gradients into full-size steps). Every checkpoint is kept.
# 20 steps leave the last relaunch room to agree on a step before the run ends, even with the
# machine loaded (at 12 a loaded pair sometimes finished first).
PAIR = ("optim.name=sgd", "optim.base_lr=0.05", "total_steps=20", "keep_checkpoints=20",
        "peer_timeout_s=3")


def launch_pair(workdir: Path, photos: Path, *overrides: str) -> list[subprocess.Popen]:
    port = free_port()
    return [run_pretrain(workdir, *PAIR, f"data.dataset={photos}", *overrides, wait=False,
                         devices=2,
                         extra=["--coordinator", f"localhost:{port}", "--num-processes", "2",
                                "--process-id", str(i)])
            for i in range(2)]


def outputs(processes: list[subprocess.Popen]) -> list[str]:
    return [process.communicate(timeout=600)[0] for process in processes]


def preempted_step(output: str) -> int:
    return int(re.search(r"preempted: saved step (\d+), exiting", output).group(1))


@pytest.fixture(scope="module")
def straight_pair(tmp_path_factory):
    """A pair run to its end, checkpointing every step, and the photos it read."""
    from PIL import Image

    from img2imu_jax.images.sources import bundled_photo_paths

    photos = tmp_path_factory.mktemp("photos")
    photo = Image.open(next(p for p in bundled_photo_paths() if p.stem == "coffee"))
    for i in range(32):
        photo.convert("RGB").save(photos / f"coffee{i:02d}.jpg")
    workdir = tmp_path_factory.mktemp("runs") / "straight_pair"
    processes = launch_pair(workdir, photos, "checkpoint_every=1")
    for process, output in zip(processes, outputs(processes)):
        assert process.returncode == 0, output
    return workdir, photos


def test_two_processes_on_localhost_match_one_process(straight_pair, tmp_path):
    """The pair against 1 process × 4 devices, at step 2; the trainer itself checks at every
    checkpoint that both processes hold identical parameters."""
    pair_dir, photos = straight_pair
    process = run_pretrain(tmp_path / "one", *PAIR, f"data.dataset={photos}", wait=False,
                           devices=4)
    wait_for_checkpoint(tmp_path / "one", 2, process)
    process.kill()
    process.wait()
    two, one = final_state(pair_dir, 2), final_state(tmp_path / "one", 2)
    assert len(two[2]["position"]) == 2 and len(one[2]["position"]) == 1
    # gloo sums in another order, and steps of a contrastive loss on 16 images carry that
    # rounding forward; so compare what training changed: each tensor's update must agree
    # to 2 %, where a wrong gradient average or missing negatives would be off by ~100 %.
    config = load_config(CONFIGS / "demo.py", SMALL + list(PAIR))
    start = by_name(nnx.state(build(config)))
    two_params, one_params = by_name(two[1]["model"]), by_name(one[1]["model"])
    for name, value in one_params.items():
        update = value - start[name]
        if np.linalg.norm(update) > 1e-6:
            gap = np.linalg.norm(two_params[name] - value) / np.linalg.norm(update)
            assert gap < 0.02, f"{name}: updates differ by {gap:.1%}"


def test_two_processes_preempted_killed_and_relaunched_match_a_straight_pair(straight_pair,
                                                                             tmp_path):
    """SIGTERM to one process, then a SIGKILL of a peer, then SIGTERM to both, relaunching the
    same commands each time: each stop is clean, and the state and every process's input
    position equal the straight pair's at the same step."""
    straight, photos = straight_pair
    workdir = tmp_path / "faults"

    # A preemption notice to process 1 alone: both save the same step and exit 0.
    pair = launch_pair(workdir, photos)
    wait_for_checkpoint(workdir, 2, pair[0])
    pair[1].send_signal(signal.SIGTERM)
    logs = outputs(pair)
    assert [process.returncode for process in pair] == [0, 0], logs
    stopped = {preempted_step(log) for log in logs}
    assert len(stopped) == 1 and 2 < min(stopped) < 20, logs
    (stopped,) = stopped

    # A relaunch resumes; process 1 dies at its next checkpoint; process 0 ends within the
    # peer timeout (3 s; JAX's own backstop would take 6 s) with one line and no traceback.
    pair = launch_pair(workdir, photos)
    killed_at = stopped + 2 - stopped % 2
    wait_for_checkpoint(workdir, killed_at, pair[0])
    pair[1].kill()
    killed = time.monotonic()
    log = pair[0].communicate(timeout=120)[0]
    seconds = time.monotonic() - killed
    pair[1].wait()
    last = final_state(workdir)[0]
    assert pair[0].returncode == 1, log
    assert seconds < 20, f"{seconds:.1f} s"
    assert f"resumed from step {stopped}" in log
    assert re.search(rf"process 1 stopped answering \(no heartbeat for \d+ s\); process 0 "
                     rf"stops, the last checkpoint is step {last}\.", log), log
    assert "Traceback" not in log and "stack trace" not in log, log

    # Relaunched again, both get SIGTERM: the same step on both, and there the same state and
    # input positions as the straight pair.
    pair = launch_pair(workdir, photos)
    wait_for_checkpoint(workdir, last + 2, pair[0])
    for process in pair:
        process.send_signal(signal.SIGTERM)
    logs = outputs(pair)
    assert [process.returncode for process in pair] == [0, 0], logs
    stopped = {preempted_step(log) for log in logs}
    assert len(stopped) == 1, logs
    step, state, data = final_state(workdir)
    assert stopped == {step}
    _, expected, expected_data = final_state(straight, step)
    assert data == expected_data and len(data["position"]) == 2
    jax.tree.map(np.testing.assert_array_equal, state, expected)


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
