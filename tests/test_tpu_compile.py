"""`img2imu compile`: a tiny recipe compiled for TPU v5e 2x2 on this CPU host (needs libtpu,
which the test extra installs), its figures checked against numbers computed here."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from img2imu_jax import tpu_compile, tpu_host
from img2imu_jax.cli import main
from img2imu_jax.config import RECIPES, load_config

TINY = ["method=simclr", "augment.spec=jitter", "model.width=8", "data.image_size=(32,48)",
        "batch_size=8", "model.dtype=bfloat16"]
needs_libtpu = pytest.mark.skipif(not tpu_host.libtpu_installed(),
                                  reason="needs libtpu: pip install 'img2imu-jax[tpu]'")


def resnet18_forward_flops(height, width, channels):
    """Convolution FLOPs (2 per multiply-add) of ResNet-18 from its layer shapes."""
    def conv(h, w, c_in, c_out, k):
        return 2 * h * w * c_in * c_out * k * k

    h, w = -(-height // 2), -(-width // 2)  # the 7x7 stride-2 stem
    flops = conv(h, w, 3, channels, 7)
    h, w = h // 2, w // 2  # 3x3 stride-2 max pool over a one-pixel pad
    c = channels
    for stage in range(4):
        planes = channels * 2**stage
        for block in range(2):
            if stage and not block:
                h, w = -(-h // 2), -(-w // 2)
                flops += conv(h, w, c, planes, 1)  # the strided shortcut
            flops += conv(h, w, c, planes, 3) + conv(h, w, planes, planes, 3)
            c = planes
    return flops


# Loads libtpu and holds its lockfile until stdin closes, as any JAX process would.
HOLD_LIBTPU = """
import sys
from jax.experimental import topologies
topologies.get_topology_desc(platform="tpu", topology_name="v5e:2x2")
print("holding", flush=True)
sys.stdin.read()
"""


@pytest.fixture
def another_process_holding_libtpu():
    env = {k: v for k, v in os.environ.items() if k != "ALLOW_MULTIPLE_LIBTPU_LOAD"}
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LIBTPU], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                              env=env)
    assert holder.stdout.readline().strip() == "holding"
    yield
    holder.stdin.close()
    holder.wait(timeout=60)


@needs_libtpu
def test_a_tiny_recipe_compiles_for_v5e_and_its_report_adds_up(
        tmp_path, capsys, another_process_holding_libtpu):
    out = tmp_path / "report.json"
    code = main(["compile", "--config", "demo", "--topology", "v5e:2x2", "--json", str(out),
                 *[f"--config.{item}" for item in TINY]])
    assert code == 0
    printed = capsys.readouterr().out
    assert "v5e:2x2: 4 chips (TPU v5 lite)" in printed and "fits" in printed
    report = json.loads(out.read_text())
    assert report["chips"] == 4 and report["images_per_chip"] == 2 and report["fits"]

    from img2imu_jax import pretrain
    from img2imu_jax.parallel import data_mesh

    config = load_config(RECIPES / "demo.py", TINY)
    state = pretrain.setup(config, data_mesh(jax.devices()[:1]), steps_per_epoch=1,
                           total_steps=1).state
    state_bytes = sum(np.asarray(leaf).nbytes for leaf in jax.tree.leaves(state))
    assert report["state_bytes"] == state_bytes
    hbm = report["hbm_bytes"]
    assert hbm["arguments"] >= state_bytes and hbm["total"] < 16 * 2**30

    # SimCLR: both views through the encoder, forward and backward (about 3x the forward).
    encoder = 2 * report["images_per_chip"] * resnet18_forward_flops(32, 48, 8)
    assert 2.5 * encoder < report["gflop_per_chip"] * 1e9 < 4 * encoder
    step_s = report["estimated_step_ms"] / 1e3
    assert report["estimated_cycles"] == pytest.approx(step_s * 1.5e9)
    assert report["images_per_s_per_chip"] == pytest.approx(2 / step_s)
    assert report["mfu_ceiling"] == pytest.approx(report["flop_bound_ms"] / 1e3 / step_s)
    assert report["collectives"].get("all-reduce", 0) > 0  # gradients over 4 chips


def test_unknown_topology_and_missing_libtpu_are_one_line_errors(capsys, monkeypatch):
    assert main(["compile", "--config", "demo", "--topology", "v9x:2x2"]) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == ["img2imu compile: error: unknown TPU topology 'v9x:2x2': give CHIP:SHAPE "
                     "with CHIP one of v5e, v5p, v6e (e.g. v5e:2x2, v5p:4x4x4, v6e:4x4)"]
    monkeypatch.setattr(tpu_host, "libtpu_installed", lambda: False)
    assert main(["compile", "--config", "demo", "--topology", "v5e:2x2"]) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == ["img2imu compile: error: compiling for TPU needs libtpu: "
                     "pip install 'img2imu-jax[tpu]'"]


@needs_libtpu
def test_with_libtpu_installed_an_ordinary_command_prints_only_its_own_error(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "JAX_PLATFORMS"}
    run = subprocess.run(
        [sys.executable, "-m", "img2imu_jax.cli", "finetune", "--config",
         "finetune_basicmotions", "--workdir", str(tmp_path / "ft"),
         f"--config.pretrained={tmp_path / 'missing'}"],
        capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 1
    errors = [line for line in run.stderr.splitlines() if not line.startswith("INFO ")]
    assert errors == [f"img2imu finetune: error: no finished checkpoint in {tmp_path / 'missing'} "
                      "(expected WORKDIR/checkpoints)"]


def test_a_collective_split_over_fused_computations_counts_once():
    """The TPU compiler copies one asynchronous all-gather into every fused computation of its
    chain (a paper step showed 27 copies of its one image all-gather)."""
    hlo = "\n".join([
        "%fused_a (p: f32[4]) -> f32[16] {",
        '  %all-gather.1 = f32[16]{0} all-gather(%p), dimensions={0}, '
        'frontend_attributes={chain_id="0"}',
        "}",
        "%fused_b (p: f32[4]) -> f32[16] {",
        '  %all-gather.2 = f32[16]{0} all-gather(%p), dimensions={0}, '
        'frontend_attributes={chain_id="0"}',
        "}",
        "ENTRY %main (x: f32[4]) -> f32[4] {",
        '  %all-reduce.1 = f32[4]{0} all-reduce(%x), backend_config={"estimated_cycles":"10"}',
        '  ROOT %all-reduce.2 = f32[4]{0} all-reduce(%all-reduce.1), '
        'backend_config={"estimated_cycles":"5"}',
        "}",
    ])
    program = tpu_compile.read_program(hlo)
    assert program["collectives"] == {"all-reduce": 2, "all-gather": 1}
    assert program["estimated_cycles"] == 15
