"""The main job on the embedded default.

Until the end-to-end job lands, the demo renders the paper authors' own sample window (a
30 s jogging window at 20 Hz from their Android app), compares it channel by channel with their
rendering when that sits beside it, and draws what the sensor-aware augmentations do to a
bundled photo and to that spectrogram.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from img2imu_jax.augment_grid import augment_grid, grid_inputs
from img2imu_jax.images.sources import bundled_photo_paths
from img2imu_jax.render import read_png, render_csv, write_png

REFERENCE_DIR = Path("shared") / "reference" / "img2imu_app"
# The authors' settings for this window (paper.md §2.2): WISDM v1, 20 Hz, nfft 128, noverlap 116.
REFERENCE_SETTINGS = dict(sample_rate=20.0, nfft=128, noverlap=116)
SENSOR_AWARE = "translate_x|permute_x|hue|jitter"


def find_reference_window(start: str | os.PathLike = ".") -> Path:
    """Finds `shared/reference/img2imu_app/jogging.csv` in `start` or any folder above it."""
    here = Path(start).resolve()
    for folder in (here, *here.parents):
        candidate = folder / REFERENCE_DIR / "jogging.csv"
        if candidate.is_file():
            return candidate
    raise ValueError(
        f"the reference window {REFERENCE_DIR / 'jogging.csv'} was not found in {here} or any "
        "folder above it; pass --input with a CSV of x, y, z columns"
    )


def run(workdir: str | os.PathLike, input_csv: str | os.PathLike | None = None) -> dict:
    """Renders the window, writes PNGs into `workdir`, prints where they are; returns a summary."""
    csv_path = Path(input_csv) if input_csv is not None else find_reference_window()
    workdir = Path(workdir)
    ours_path = workdir / f"{csv_path.stem}_spectrogram.png"
    ours = render_csv(csv_path, ours_path, **REFERENCE_SETTINGS)
    summary: dict = {"input": str(csv_path), "image": str(ours_path)}
    print(f"Rendered {csv_path} ({REFERENCE_SETTINGS}) -> {ours_path}")
    authors = csv_path.with_name(f"{csv_path.stem}_combined.png")
    if authors.is_file():
        theirs = read_png(authors, size=ours.shape[:2])
        correlation = [
            float(np.corrcoef(ours[..., c].ravel(), theirs[..., c].ravel())[0, 1]) for c in range(3)
        ]
        side_by_side = workdir / f"{csv_path.stem}_ours_vs_authors.png"
        gap = np.ones((ours.shape[0], 4, 3), np.float32)
        write_png(np.concatenate([ours, gap, theirs], axis=1), side_by_side)
        summary.update(authors_image=str(authors), side_by_side=str(side_by_side),
                       pearson_rgb=correlation)
        print(f"Ours (left) vs the authors' rendering (right) -> {side_by_side}")
        print("Per-channel Pearson correlation R/G/B: " + ", ".join(f"{r:.4f}" for r in correlation))
    photo = [p for p in bundled_photo_paths() if p.stem == "grace_hopper"]
    grid_path = workdir / "augment_grid.png"
    inputs = grid_inputs(photo, [csv_path], **REFERENCE_SETTINGS)
    write_png(augment_grid(inputs, SENSOR_AWARE), grid_path)
    summary["augment_grid"] = str(grid_path)
    print(f"The sensor-aware augmentations ({SENSOR_AWARE}) on a photo and on the window -> "
          f"{grid_path}")
    return summary
