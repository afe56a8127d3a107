"""Tables and figures of downstream results: per-dataset tables, the paper's Table II across
datasets, F1 against shots (its Figure 7) and confusion matrices.

Everything reads the `results.json` record that `finetune.results.run` writes, so a report can be
rebuilt, or datasets combined, without re-running anything:
`record["results"][mode][encoder][str(n)]` holds `f1` (per fold), `mean`, `std`, `confusion`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from img2imu_jax.paths import user_path
from img2imu_jax.spectrogram import FLOOR_BELOW_PEAK_DB

MODE_TITLES = {"linear": "linear evaluation (frozen encoder)",
               "finetune": "full fine-tune (head, then whole network)"}

LINEAR_PROTOCOL_TITLES = {"tuned": ", head learning rate chosen on validation",
                          "paper": ", the paper's fixed head learning rate"}


def results_markdown(record: dict) -> str:
    """Macro-F1 (%) per encoder and shot count, one table per mode."""
    lines = []
    for mode, by_encoder in record["results"].items():
        shots = sorted({n for by_n in by_encoder.values() for n in by_n}, key=int)
        protocol = LINEAR_PROTOCOL_TITLES.get(record.get("linear_protocol"), "")
        title = MODE_TITLES[mode] + (protocol if mode == "linear" else "")
        lines += [f"Macro-F1 (%) on {record['dataset']}, {title}, mean ± std over "
                  "folds", "",
                  "| encoder | " + " | ".join(f"{n}-shot" for n in shots) + " |",
                  "|---|" + "---:|" * len(shots)]
        for name, by_n in by_encoder.items():
            cells = [f"{100 * by_n[n]['mean']:.1f} ± {100 * by_n[n]['std']:.1f}"
                     if n in by_n else "—" for n in shots]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def table_ii(records: Sequence[dict], *, shots: int = 10, mode: str = "linear") -> dict:
    """The paper's Table II: rows encoders, columns datasets, macro-F1 at `shots` per class.

    `Avg.` is the mean of the dataset means ± the std of every fold score of every dataset
    (the paper does not say how its Avg. std is taken). A cell the records lack is None.
    """
    datasets = [record["dataset"] for record in records]
    if len(set(datasets)) != len(datasets):
        raise ValueError(f"each dataset once, please; got {datasets}")
    encoders: list[str] = []
    for record in records:
        if mode not in record["results"]:
            raise ValueError(f"the {record['dataset']} results have no {mode!r} mode; "
                             f"they have {sorted(record['results'])}")
        encoders += [e for e in record["results"][mode] if e not in encoders]
    rows = {}
    for encoder in encoders:
        cells, pooled = {}, []
        for record in records:
            summary = record["results"][mode].get(encoder, {}).get(str(shots))
            cells[record["dataset"]] = summary and {"mean": summary["mean"], "std": summary["std"]}
            pooled += summary["f1"] if summary else []
        present = [cell["mean"] for cell in cells.values() if cell]
        average = ({"mean": float(np.mean(present)), "std": float(np.std(pooled))}
                   if len(present) == len(records) else None)
        rows[encoder] = {**cells, "Avg.": average}
    return {"shots": shots, "mode": mode, "datasets": datasets, "rows": rows}


def table_ii_markdown(table: dict) -> str:
    columns = table["datasets"] + ["Avg."]
    lines = [f"Macro-F1, {table['shots']} samples per class, {MODE_TITLES[table['mode']]}, "
             "mean ± std over folds", "",
             "| encoder | " + " | ".join(columns) + " |", "|---|" + "---:|" * len(columns)]
    for encoder, cells in table["rows"].items():
        text = [f"{cells[c]['mean']:.3f} ± {cells[c]['std']:.3f}" if cells[c] else "—"
                for c in columns]
        lines.append(f"| {encoder} | " + " | ".join(text) + " |")
    return "\n".join(lines) + "\n"


def write_table_ii(results: Sequence[str | os.PathLike], out_dir: str | os.PathLike, *,
                   shots: int = 10, mode: str = "linear") -> dict:
    """Reads each `results.json` (or the fine-tune workdir holding one), writes
    `table_ii.md` and `table_ii.json` into `out_dir`."""
    records = []
    for path in map(Path, results):
        path = path / "results.json" if path.is_dir() else path
        if not path.is_file():
            raise ValueError(f"{path} does not exist (expected a finetune workdir or its "
                             "results.json)")
        try:
            records.append(json.loads(path.read_text()))
        except json.JSONDecodeError as e:
            raise ValueError(f"{path} line {e.lineno}: not valid JSON ({e.msg})") from e
    table = table_ii(records, shots=shots, mode=mode)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "table_ii.json").write_text(json.dumps(table, indent=2) + "\n")
    (out_dir / "table_ii.md").write_text(table_ii_markdown(table))
    return table


def plot_f1_vs_shots(record: dict, path: str | os.PathLike) -> None:
    """Mean macro-F1 ± std against shots per class, a line per encoder and mode, and chance.

    Chance is 1/K for K classes: the expected macro-F1 of guessing uniformly at random when the
    test classes are balanced (per class, precision = its share = 1/K and recall = 1/K).
    """
    plt = pyplot()
    figure, axes = plt.subplots(figsize=(5.5, 3.8))
    chance = 100 / len(record["classes"])
    axes.axhline(chance, color="grey", linestyle=":", linewidth=1,
                 label=f"chance ({len(record['classes'])} classes, {chance:.0f} %)")
    for mode, by_encoder in record["results"].items():
        for name, by_n in by_encoder.items():
            shots = [int(n) for n in by_n]
            means = np.array([by_n[n]["mean"] for n in by_n]) * 100
            stds = np.array([by_n[n]["std"] for n in by_n]) * 100
            label = name if len(record["results"]) == 1 else f"{name}, {mode}"
            axes.errorbar(shots, means, yerr=stds, marker="o", capsize=3, label=label,
                          linestyle="-" if mode == "linear" else "--")
    ticks = sorted({int(n) for by_encoder in record["results"].values()
                    for by_n in by_encoder.values() for n in by_n})
    axes.set(xscale="log", xlabel="labelled windows per class", ylabel="macro-F1 (%)",
             title=record["dataset"])
    axes.set_xticks(ticks, [str(n) for n in ticks])
    axes.minorticks_off()
    axes.set_ylim(0, 100)
    axes.legend(fontsize=7)
    save_figure(plt, figure, path)


def plot_spectrogram_axes(window: np.ndarray, image: np.ndarray, path: str | os.PathLike, *,
                          sample_rate: float, nfft: int, noverlap: int,
                          source_rate: float | None = None, title: str = "") -> None:
    """The network-input image beside one labelled panel per axis: log-power (dB) over time
    (s) and frequency (Hz), from the same STFT the image is made of.

    `source_rate`: the rate the data were recorded at, when they were resampled up to
    `sample_rate`; the bands above its Nyquist frequency hold only the resampling filter's floor
    and are marked.
    """
    from img2imu_jax.spectrogram import log_power_spectrogram

    db = np.asarray(log_power_spectrogram(np.asarray(window, np.float32), sample_rate=sample_rate,
                                          nfft=nfft, noverlap=noverlap))
    seconds = max(len(window), nfft) / sample_rate
    extent = (0, seconds, 0, sample_rate / 2)
    plt = pyplot()
    figure, axes = plt.subplots(1, 4, figsize=(13, 3.2))
    axes[0].imshow(image, extent=extent, aspect="auto")
    axes[0].set(title="network input (x, y, z -> R, G, B)", xlabel="time (s)",
                ylabel="frequency (Hz)")
    for axis, (ax, name) in enumerate(zip(axes[1:], "xyz")):
        finite = db[..., axis][np.isfinite(db[..., axis])]
        # the image's own range: min-max after the clamp FLOOR_BELOW_PEAK_DB below the peak
        low = max(finite.min(), finite.max() - FLOOR_BELOW_PEAK_DB) if finite.size else None
        shown = ax.imshow(db[::-1, :, axis], extent=extent, aspect="auto", cmap="magma",
                          vmin=low)
        ax.set(title=f"axis {name}", xlabel="time (s)")
        figure.colorbar(shown, ax=ax, label="dB")
    for ax in axes:
        if source_rate and source_rate < sample_rate:
            ax.axhline(source_rate / 2, color="white", linestyle="--", linewidth=1)
    title = title or f"{seconds:g} s at {sample_rate:g} Hz, nfft {nfft}, noverlap {noverlap}"
    if source_rate and source_rate < sample_rate:
        title += (f"; above the dashed line ({source_rate / 2:g} Hz, the Nyquist frequency of "
                  f"the {source_rate:g} Hz recording): resampling floor only")
    figure.suptitle(title, fontsize=9)
    save_figure(plt, figure, path)


def plot_confusion(confusion: Sequence[Sequence[int]], classes: Sequence[str],
                   path: str | os.PathLike, *, title: str) -> None:
    """Test windows by true class (rows) and predicted class (columns), counts annotated."""
    plt = pyplot()
    counts = np.asarray(confusion)
    figure, axes = plt.subplots(figsize=(1.2 + 0.8 * len(classes), 1.0 + 0.8 * len(classes)))
    axes.imshow(counts, cmap="Blues")
    for (row, column), count in np.ndenumerate(counts):
        axes.text(column, row, str(count), ha="center", va="center",
                  color="white" if count > counts.max() / 2 else "black")
    axes.set(xticks=range(len(classes)), yticks=range(len(classes)), xlabel="predicted",
             ylabel="true", title=title)
    axes.set_xticklabels(classes, rotation=45, ha="right")
    axes.set_yticklabels(classes)
    save_figure(plt, figure, path)


def pyplot():
    """matplotlib.pyplot on the file-only Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(plt, figure, path: str | os.PathLike) -> None:
    figure.tight_layout()
    path = user_path(path, what="figure")
    with path.open("wb") as handle:  # through epath, so gs:// works too
        figure.savefig(handle, dpi=120, format=path.suffix.lstrip(".") or "png")
    plt.close(figure)


def plot_probe_curves(runs: dict[str, list[dict]], path: str | os.PathLike) -> None:
    """The pre-training probe's few-shot macro-F1 against step, a panel per shot count: a line
    per run (its `metrics.jsonl` rows) and, dashed, step 0's random-init encoder."""
    plt = pyplot()
    names = sorted({k for rows in runs.values() for row in rows for k in row
                    if k.startswith("probe/f1_")}, key=lambda k: int(k[9:-4]))
    figure, axes = plt.subplots(1, max(len(names), 1), figsize=(4.2 * max(len(names), 1), 3.4),
                                squeeze=False)
    for ax, name in zip(axes[0], names):
        for title, rows in runs.items():
            points = [(row["step"], 100 * row[name]) for row in rows if name in row]
            if points:
                line, = ax.plot(*zip(*points), marker=".", label=title)
                if points[0][0] == 0:
                    ax.axhline(points[0][1], color=line.get_color(), linestyle="--",
                               linewidth=0.8)
        ax.set(xlabel="pre-training step", ylabel="macro-F1 (%)",
               title=f"probe, {name[9:-4]}-shot (dashed: random init)")
        ax.legend(fontsize=7)
    save_figure(plt, figure, path)
