"""`img2imu compile`: a tiny recipe compiled for TPU v5e 2x2 on this CPU host (needs libtpu,
which the test extra installs), its figures checked against numbers computed here."""

import json
import os
import re
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


def resnet18_convolutions(height, width, channels):
    """`(h, w, c_in, c_out, k)` of every convolution of ResNet-18 (each followed by a
    BatchNorm over c_out), from its layer shapes; h, w: the output's size."""
    h, w = -(-height // 2), -(-width // 2)  # the 7x7 stride-2 stem
    yield h, w, 3, channels, 7
    h, w = h // 2, w // 2  # 3x3 stride-2 max pool over a one-pixel pad
    c = channels
    for stage in range(4):
        planes = channels * 2**stage
        for block in range(2):
            if stage and not block:
                h, w = -(-h // 2), -(-w // 2)
                yield h, w, c, planes, 1  # the strided shortcut
            yield h, w, c, planes, 3
            yield h, w, planes, planes, 3
            c = planes


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
    assert "v5e:2x2: 4 chips (TPU v5 lite) over 1 host(s), 2 images per chip" in printed
    assert "fits" in printed and "images/s per chip" in printed
    report = json.loads(out.read_text())
    assert report["chips"] == 4 and report["examples_per_chip"] == 2 and report["fits"]
    assert report["input"] == "images" and report["recipe"]["example_shape"] == [32, 48, 3]

    # Adam: the parameters and their two moments, the BatchNorm means and variances, Adam's and
    # the schedule's step counts, the run's step and key (float32, int32, 2 x uint32).
    convolutions = list(resnet18_convolutions(32, 48, 8))
    batchnorm = sum(c_out for *_, c_out, _ in convolutions)
    head = 2 * (64 * 64 + 64)  # demo's 2-layer head on the 8 x 8 = 64 features, 64 out
    parameters = sum(c_in * c_out * k * k for *_, c_in, c_out, k in convolutions) + \
        2 * batchnorm + head
    state_bytes = 4 * (3 * parameters + 2 * batchnorm) + 4 + 4 + 4 + 8
    assert report["state_bytes"] == state_bytes
    hbm = report["hbm_bytes"]
    assert hbm["arguments"] >= state_bytes and hbm["total"] < 16 * 2**30

    # SimCLR: both views through the encoder, forward and backward (about 3x the forward).
    encoder = 2 * report["examples_per_chip"] * sum(
        2 * h * w * c_in * c_out * k * k for h, w, c_in, c_out, k in convolutions)
    assert 2.5 * encoder < report["gflop_per_chip"] * 1e9 < 4 * encoder
    step_s = report["estimated_step_ms"] / 1e3
    assert report["estimated_cycles"] == pytest.approx(step_s * 1.5e9)
    assert report["examples_per_s_per_chip"] == pytest.approx(2 / step_s)
    assert report["mfu_ceiling"] == pytest.approx(report["flop_bound_ms"] / 1e3 / step_s)
    assert report["collectives"].get("all-reduce", 0) > 0  # gradients over 4 chips
    assert report["across_slices"] == {} and report["bytes_across_slices_per_chip"] == 0


# SimCLR (1D) on 1 s windows at 50 Hz, every width tiny.
TINY_1D = ["batch_size=16", "data.seconds=1.0", "model.fc_features=16",
           "model.hidden_features=16", "model.out_features=8"]


@needs_libtpu
def test_a_1d_method_compiles_for_two_slices_in_windows_and_crosses_them_once_reduced(
        tmp_path, capsys):
    out = tmp_path / "report.json"
    code = main(["compile", "--config", "simclr_1d", "--topology", "v5e:2x2", "--slices", "2",
                 "--json", str(out), *[f"--config.{item}" for item in TINY_1D]])
    assert code == 0
    printed = capsys.readouterr().out
    report = json.loads(out.read_text())
    chips_per_slice = 2 * 2  # a v5e 2x2 slice is one host of four chips
    assert report["slices"] == 2 and report["chips"] == 2 * chips_per_slice
    assert report["hosts"] == 2
    assert report["input"] == "windows" and report["examples_per_chip"] == 16 // 8
    assert report["recipe"]["example_shape"] == [50, 3]
    assert ("v5e:2x2 x 2 slices: 8 chips (TPU v5 lite) over 2 host(s), 2 windows per chip"
            in printed)
    assert "windows/s per chip" in printed and "image" not in printed

    # The gradients are summed over all eight chips, and SimCLR's negatives gathered from the
    # global batch: both cross the slices. Each slice must receive the other's summed
    # gradients, at least a share of them per chip; a slice that reduces over its own chips
    # (ICI) first sends less than a whole copy from each.
    from flax import nnx

    from img2imu_jax import pretrain
    from img2imu_jax.parallel import data_mesh

    config = load_config(RECIPES / "simclr_1d.py", TINY_1D)
    state = pretrain.setup(config, data_mesh(jax.devices()[:1]), steps_per_epoch=1,
                           total_steps=1, input_stats={"input_mean": np.zeros(3, np.float32),
                                                       "input_std": np.ones(3, np.float32)},
                           abstract=True).state
    gradient_bytes = sum(np.prod(leaf.shape) * leaf.dtype.itemsize
                         for leaf in jax.tree.leaves(nnx.filter_state(state["model"], nnx.Param)))
    assert report["across_slices"].get("all-reduce", 0) > 0
    assert report["across_slices"].get("all-gather", 0) > 0
    sent = report["bytes_across_slices_per_chip"]
    assert gradient_bytes / chips_per_slice <= sent < gradient_bytes
    assert "across slices (data-centre network): " in printed
    # Each transfer is a send and a receive between the slices.
    assert (report["collectives"]["send"] == report["collectives"]["recv"]
            == sum(report["across_slices"].values()))


@needs_libtpu
def test_a_step_that_needs_more_hbm_than_the_chip_has_is_one_line_with_the_sizes(capsys):
    # 32768 images per chip: SimCLR's similarity matrix alone is 32768 x 131072 floats per chip.
    code = main(["compile", "--config", "demo", "--topology", "v5e:2x2",
                 *[f"--config.{item}" for item in TINY], "--config.batch_size=131072"])
    assert code == 1
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and captured.out == ""
    sizes = re.search(r"does not fit on v5e:2x2 \(TPU v5 lite, 16 GiB\): needs ([\d.]+) GiB of "
                      r"HBM per chip for .+, ([\d.]+) GiB available; to lower it, "
                      r"--config.grad_chunks=K ", lines[0])
    assert sizes, lines[0]
    needed, available = map(float, sizes.groups())
    assert needed > available and 15 <= available <= 16
    assert "divides the 32768 images per chip, now 1" in lines[0]


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
