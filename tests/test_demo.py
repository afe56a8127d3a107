"""`img2imu demo` end to end in its quick mode: every stage, every report file, reuse."""

import json
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest

from img2imu_jax import cli, demo
from img2imu_jax.reports.demo import reference_check

REPORT_FILES = {"report.md", "metrics.json", "pretrain_loss.png", "f1_vs_shots.png",
                "confusion.png", "spectrograms.png", "spectrogram_axes.png", "augment_img2imu.png",
                "augment_mocov2.png", "probe_f1.png"}


@pytest.fixture(scope="module")
def quick_demo(installed_wheel, tmp_path_factory):
    """The quick demo as a user runs it: the installed wheel's `img2imu`, outside the checkout
    (the reruns below go through this checkout's code in-process)."""
    workdir = tmp_path_factory.mktemp("demo")
    result = subprocess.run([str(installed_wheel["img2imu"]), "demo", "--workdir", str(workdir),
                             "--quick"], capture_output=True, text=True,
                            env=installed_wheel["env"], cwd=installed_wheel["cwd"])
    assert result.returncode == 0, result.stderr[-3000:]
    return workdir


def test_quick_demo_writes_every_report_file(quick_demo):
    report = quick_demo / "report"
    assert REPORT_FILES <= {p.name for p in report.iterdir()}
    markdown = (report / "report.md").read_text()
    for figure in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", markdown):
        assert (report / figure).is_file()  # every embedded figure exists
    assert {p.name for p in report.glob("*.png")} <= set(
        re.findall(r"\(([^)]+\.png)\)", markdown)) | {"reference_ours.png"}
    assert "| random init |" in markdown and "full fine-tune" in markdown
    assert "probes while pre-training" in markdown
    assert "`probe`: few-shot macro-F1 on basicmotions's held-out test" in markdown
    assert "`val_probe`: few-shot macro-F1 on basicmotions's validation" in markdown
    assert "not a replication" in markdown  # the honest reading of tiny-scale numbers

    metrics = json.loads((report / "metrics.json").read_text())
    assert set(metrics["pretraining"]) == set(demo.ENCODERS)
    for run in metrics["pretraining"].values():
        assert np.isfinite(run["last_loss"]) and Path(run["workdir"]).is_dir()
        assert set(run["evals"]) == {"probe", "val_probe"}  # both evaluators, step 0 and the end
        assert all(set(by_step) == {"0", "2"} for by_step in run["evals"].values())
    results = metrics["evaluation"]["results"]
    assert set(results) == {"linear", "finetune"}
    assert set(results["linear"]) == set(demo.ENCODERS) | {demo.RANDOM}
    assert set(results["finetune"][demo.RANDOM]) == {"10"}
    assert set(results["linear"][demo.RANDOM]) == {"1", "10"}
    for path in metrics["evaluation"]["models"].values():
        assert (Path(path) / "classifier.json").is_file()


def test_rerunning_reuses_finished_stages(quick_demo, capsys):
    checkpoints = sorted(quick_demo.glob("pretrain/*/checkpoints/*"))
    stamps = [p.stat().st_mtime_ns for p in checkpoints]
    results = quick_demo / "finetune" / "results.json"
    before = results.stat().st_mtime_ns
    assert cli.main(["demo", "--workdir", str(quick_demo), "--quick"]) == 0
    out = capsys.readouterr().out
    assert out.count("finished earlier") == 3  # two pre-trainings and the evaluation
    assert [p.stat().st_mtime_ns for p in checkpoints] == stamps
    assert results.stat().st_mtime_ns == before
    assert cli.main(["demo", "--workdir", str(quick_demo)]) == 1  # a full run elsewhere
    assert "holds a quick demo run" in capsys.readouterr().err


def test_demo_without_its_recipes_says_where_they_should_be(tmp_path, capsys):
    assert cli.main(["demo", "--workdir", str(tmp_path / "d"), "--configs", str(tmp_path)]) == 1
    assert "demo.py not found" in capsys.readouterr().err


def test_reference_rendering_matches_the_authors(reference_dir, tmp_path):
    check = reference_check(tmp_path, reference_dir / "jogging.csv")
    assert min(check["pearson_rgb"]) >= 0.99
    assert (tmp_path / check["image"]).is_file()
