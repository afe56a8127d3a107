"""The launch scripts: syntax, the commands their dry runs print, and their errors.

Nothing here needs gcloud, SLURM or JAX: dry runs only print, and the one real run of
local_multiprocess.sh starts a stand-in for `img2imu` (a few lines of bash).
"""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LAUNCH = ROOT / "launch"
SCRIPTS = ["tpu_pod.sh", "slurm.sbatch", "local_multiprocess.sh"]
# Settings a developer's shell may hold that the scripts read; each test starts without them.
SETTINGS = {"TPU_NAME", "ZONE", "PROJECT", "REPO_URL", "BRANCH", "REMOTE_DIR", "PYTHON", "CONFIG",
            "WORKDIR", "DETACH", "DRY_RUN", "VENV", "REPO", "GPUS_PER_NODE", "NUM_PROCESSES",
            "DEVICES_PER_PROCESS", "PORT", "LOG_DIR", "IMG2IMU", "XLA_FLAGS", "JAX_PLATFORMS"}

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


def launch(script, *args, cwd=ROOT, **env):
    clean = {k: v for k, v in os.environ.items()
             if k not in SETTINGS and not k.startswith("SLURM_")}
    return subprocess.run(["bash", str(LAUNCH / script), *args], cwd=cwd, env={**clean, **env},
                          capture_output=True, text=True, timeout=30)


def commands(result):
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines and all(line.startswith("+ ") for line in lines), result.stdout
    return lines


@pytest.mark.parametrize("script", SCRIPTS)
def test_syntax_and_help(script):
    subprocess.run(["bash", "-n", str(LAUNCH / script)], check=True)
    result = launch(script, "--help")
    assert result.returncode == 0 and "Usage:" in result.stdout


TPU = {"TPU_NAME": "my-tpu", "ZONE": "us-central2-b", "REPO_URL": "https://example.org/img2imu.git"}


def test_tpu_pod_setup_then_train():
    setup, train = commands(launch("tpu_pod.sh", "--dry-run", "--workdir", "gs://bucket/run",
                                   "--config.batch_size=64", **TPU))
    for line in (setup, train):
        assert "gcloud compute tpus tpu-vm ssh my-tpu --zone us-central2-b" in line
        assert "--worker=all --command" in line
        assert "--project" not in line
    assert "git clone -q --branch main https://example.org/img2imu.git img2imu-jax" in setup
    assert 'pip install -q -e ".[tpu]"' in setup
    assert ("img2imu pretrain --config img2imu_paper --workdir gs://bucket/run "
            "--distributed --config.batch_size=64") in train


def test_tpu_pod_steps_flags_and_env():
    lines = commands(launch("tpu_pod.sh", "train", "stop", "--project", "p1", "--detach",
                            "--config", "configs/simclr_r50_imagenet.py", "--",
                            "--config.batch_size=4096", DRY_RUN="1", WORKDIR="gs://b/r", **TPU))
    assert len(lines) == 2 and all("--project p1 --worker=all" in line for line in lines)
    assert "nohup .venv/bin/img2imu pretrain --config configs/simclr_r50_imagenet.py" in lines[0]
    assert "--distributed --config.batch_size=4096 > ~/img2imu-pretrain.log" in lines[0]
    assert "pkill -TERM" in lines[1]


def test_tpu_pod_warns_about_a_local_workdir():
    result = launch("tpu_pod.sh", "train", "--dry-run", WORKDIR="/tmp/run", **TPU)
    assert result.returncode == 0 and "every worker must see /tmp/run" in result.stderr


@pytest.mark.parametrize("missing, message", [("TPU_NAME", "no TPU name"), ("ZONE", "no zone"),
                                              ("REPO_URL", "no repository"),
                                              ("WORKDIR", "no workdir")])
def test_tpu_pod_missing_settings(missing, message, tmp_path):
    settings = {**TPU, "WORKDIR": "gs://b/r"}
    del settings[missing]
    # Outside a git checkout, so REPO_URL cannot default to an origin.
    script = tmp_path / "tpu_pod.sh"
    shutil.copy(LAUNCH / "tpu_pod.sh", script)
    result = subprocess.run(["bash", str(script), "--dry-run"], capture_output=True, text=True,
                            env={**{k: v for k, v in os.environ.items() if k not in SETTINGS},
                                 **settings}, cwd=tmp_path, timeout=30)
    assert result.returncode != 0 and message in result.stderr
    assert result.stdout == ""  # nothing half-done: settings are checked before any step


def test_slurm_dry_run():
    (line,) = commands(launch("slurm.sbatch", "--config.batch_size=64", DRY_RUN="1",
                              WORKDIR="/shared/run", SLURM_GPUS_PER_NODE="a100:4",
                              SLURM_CPUS_PER_TASK="16"))
    assert line.startswith("+ srun --ntasks-per-node=1 --kill-on-bad-exit=1 --cpus-per-task=16 ")
    # One process per node drives all of the node's GPUs, not only the one of its local rank.
    assert f"{ROOT}/.venv/bin/img2imu pretrain --config img2imu_paper" in line
    assert line.endswith("--workdir /shared/run --distributed --local-device-ids 0,1,2,3 "
                         "--config.batch_size=64")


def test_slurm_settings_from_env_outside_slurm():
    (line,) = commands(launch("slurm.sbatch", "--dry-run", WORKDIR="w", GPUS_PER_NODE="2",
                              CONFIG="configs/demo.py", VENV="/opt/venv"))
    assert "--cpus-per-task" not in line
    assert ("/opt/venv/bin/img2imu pretrain --config configs/demo.py --workdir w --distributed "
            "--local-device-ids 0,1") in line


@pytest.mark.parametrize("env, message", [({"GPUS_PER_NODE": "8"}, "no WORKDIR"),
                                          ({"WORKDIR": "w"}, "GPUs per node unknown")])
def test_slurm_missing_settings(env, message):
    result = launch("slurm.sbatch", "--dry-run", **env)
    assert result.returncode != 0 and message in result.stderr and result.stdout == ""


def test_local_multiprocess_dry_run():
    lines = commands(launch("local_multiprocess.sh", "--dry-run", "--workdir", "/tmp/w",
                            "--config.batch_size=64", PORT="23456"))
    assert lines[0] == "+ mkdir -p /tmp/w/logs" and len(lines) == 3
    for i, line in enumerate(lines[1:]):
        assert "env JAX_PLATFORMS=cpu XLA_FLAGS=--xla_force_host_platform_device_count=2 " in line
        assert "pretrain --config demo --workdir /tmp/w" in line
        assert line.endswith("--coordinator localhost:23456 --num-processes 2 "
                             f"--process-id {i} --config.batch_size=64")


def test_local_multiprocess_flags():
    lines = commands(launch("local_multiprocess.sh", "-n", "3", "-k", "4", "--port", "999",
                            DRY_RUN="1", XLA_FLAGS="--xla_cpu_foo=1", IMG2IMU="/bin/trainer"))
    assert len(lines) == 4 and "--process-id 2" in lines[3] and "--num-processes 3" in lines[3]
    assert ("'XLA_FLAGS=--xla_cpu_foo=1 --xla_force_host_platform_device_count=4' "
            "/bin/trainer pretrain") in lines[1]


def test_local_multiprocess_bad_count():
    result = launch("local_multiprocess.sh", "--dry-run", "-n", "0")
    assert result.returncode != 0 and "NUM_PROCESSES must be a positive integer" in result.stderr


FAKE = """#!/bin/bash
while (($#)); do [[ $1 == --process-id ]] && id=$2; shift; done
echo "process $id of ${JAX_PLATFORMS}"
if [[ $id == 1 ]]; then sleep 0.3; echo "boom" >&2; exit 3; fi
exec sleep 30
"""


def test_local_multiprocess_stops_the_others_when_one_fails(tmp_path):
    """Process 1 fails: the script exits with its status and ends process 0 (which would sleep)."""
    fake = tmp_path / "img2imu"
    fake.write_text(FAKE)
    fake.chmod(0o755)
    result = launch("local_multiprocess.sh", "--workdir", str(tmp_path / "w"), IMG2IMU=str(fake))
    assert result.returncode == 3, result.stderr
    assert "[1] boom" in result.stdout and "[0] process 0 of cpu" in result.stdout
    assert "process 1 failed (status 3); stopping the others" in result.stderr
    logs = tmp_path / "w" / "logs"
    assert (logs / "process_1.log").read_text() == "process 1 of cpu\nboom\n"
    assert (logs / "process_0.log").read_text() == "process 0 of cpu\n"
