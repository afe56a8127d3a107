"""Smoke runs of the accelerator benchmarks at tiny sizes on the CPU: they run end to end and
write the JSON and Markdown that benchmarks/device.sh promises (speed is never asserted)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_the_pytorch_peer_runs_with_and_without_augmentation_and_prints_the_ratio(tmp_path):
    pytest.importorskip("torchvision")
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import peer_torch

    ours = tmp_path / "ours.json"
    ours.write_text(json.dumps({"results": {"paper": {"device_resident": {
        "images_per_s_per_device": 10.0}}}}))
    out = tmp_path / "peer.json"
    peer_torch.main(["--recipes", "paper", "--eager", "--batch-paper", "4", "--batch-r50", "2", "--size-paper", "32",
                     "32", "--size-r50", "32", "--queue", "16", "--steps", "1",
                     "--ours", str(ours), "--out", str(out)])
    results = json.loads(out.read_text())["results"]
    assert set(results) == {"paper", "paper_no_augment"}
    assert all(r["images_per_s"] > 0 and r["loss"] == r["loss"] for r in results.values())
    assert results["paper"]["ours_over_peer"] == pytest.approx(
        10.0 / results["paper"]["images_per_s"])


@pytest.mark.skipif(not os.environ.get("IMG2IMU_DEVICE_SH_SMOKE"),
                    reason="minutes on a contended 2-core CPU; set IMG2IMU_DEVICE_SH_SMOKE=1")
def test_device_sh_smoke_mode_writes_every_part_and_a_markdown_block(tmp_path):
    pytest.importorskip("torchvision")
    out = tmp_path / "device"
    env = dict(os.environ, SMOKE="1", OUT_DIR=str(out), PYTHON=sys.executable)
    run = subprocess.run(["bash", str(ROOT / "benchmarks" / "device.sh")], env=env, cwd=ROOT,
                         capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "FAILED" not in run.stdout, run.stdout
    for part in ("train_step", "peer_torch", "spectrogram", "finetune", "input_pipeline"):
        assert (out / f"{part}.json").exists(), (out / f"{part}.log").read_text()
    summary = (out / "summary.md").read_text()
    assert "| paper (float32, batch 8) | device_resident |" in summary
    assert "ours/peer" in summary
