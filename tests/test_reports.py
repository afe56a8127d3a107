"""The paper's Table II across datasets, the per-dataset table and the figures."""

import json

import numpy as np
import pytest

from img2imu_jax import cli
from img2imu_jax.reports import plot_confusion, plot_f1_vs_shots, results_markdown, table_ii


def record(dataset, scores, mode="linear"):
    """A results.json record with per-fold F1 `scores[encoder][n]`."""
    return {"dataset": dataset, "classes": ["walk", "run"], "results": {mode: {
        encoder: {str(n): {"f1": f1, "mean": float(np.mean(f1)), "std": float(np.std(f1)),
                           "confusion": [[2, 1], [0, 3]]} for n, f1 in by_n.items()}
        for encoder, by_n in scores.items()}}}


WISDM = record("wisdm", {"IMG2IMU": {10: [0.7, 0.8], 1: [0.4, 0.5]}, "random": {10: [0.3, 0.5]}})
DAPHNET = record("daphnet", {"IMG2IMU": {10: [0.5, 0.6]}})


def test_table_ii_rows_are_encoders_columns_datasets_and_the_average():
    table = table_ii([WISDM, DAPHNET], shots=10)
    assert table["datasets"] == ["wisdm", "daphnet"]
    row = table["rows"]["IMG2IMU"]
    assert row["wisdm"] == {"mean": pytest.approx(0.75), "std": pytest.approx(0.05)}
    assert row["Avg."]["mean"] == pytest.approx((0.75 + 0.55) / 2)
    assert row["Avg."]["std"] == pytest.approx(np.std([0.7, 0.8, 0.5, 0.6]))
    assert table["rows"]["random"]["daphnet"] is None  # not run there: no average either
    assert table["rows"]["random"]["Avg."] is None
    with pytest.raises(ValueError, match="each dataset once"):
        table_ii([WISDM, WISDM])
    with pytest.raises(ValueError, match="no 'finetune' mode"):
        table_ii([WISDM], mode="finetune")


def test_table_command_reads_workdirs_and_writes_markdown_and_json(tmp_path, capsys):
    for data in (WISDM, DAPHNET):
        (tmp_path / data["dataset"]).mkdir()
        (tmp_path / data["dataset"] / "results.json").write_text(json.dumps(data))
    out = tmp_path / "table"
    argv = ["table", str(tmp_path / "wisdm"), str(tmp_path / "daphnet" / "results.json"),
            "--out", str(out)]
    assert cli.main(argv) == 0
    markdown = (out / "table_ii.md").read_text()
    assert "| encoder | wisdm | daphnet | Avg. |" in markdown
    assert "| IMG2IMU | 0.750 ± 0.050 | 0.550 ± 0.050 | 0.650 ± 0.112 |" in markdown
    assert "| random | 0.400 ± 0.100 | — | — |" in markdown
    assert json.loads((out / "table_ii.json").read_text())["shots"] == 10
    assert "table_ii.md" in capsys.readouterr().out
    (tmp_path / "bad.json").write_text("{\n  oops")
    assert cli.main(["table", str(tmp_path / "bad.json"), "--out", str(out)]) == 1
    assert "bad.json line 2" in capsys.readouterr().err
    assert cli.main(["table", str(tmp_path / "none"), "--out", str(out)]) == 1


def test_per_dataset_table_and_figures(tmp_path):
    markdown = results_markdown(WISDM)
    assert "wisdm, linear evaluation" in markdown
    assert "| 1-shot | 10-shot |" in markdown
    assert "| IMG2IMU | 45.0 ± 5.0 | 75.0 ± 5.0 |" in markdown
    assert "| random | — | 40.0 ± 10.0 |" in markdown
    plot_f1_vs_shots(WISDM, tmp_path / "f1.png")
    plot_confusion([[5, 1], [2, 7]], ["walk", "run"], tmp_path / "cm.png", title="10-shot")
    assert (tmp_path / "f1.png").stat().st_size > 1000
    assert (tmp_path / "cm.png").stat().st_size > 1000
