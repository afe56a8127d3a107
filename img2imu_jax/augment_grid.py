"""A picture of what an augmentation spec does: each image beside a few of its random views."""

from __future__ import annotations

import os
from collections.abc import Sequence

import jax
import numpy as np

from img2imu_jax.augment import make_augment
from img2imu_jax.imu.xyz_csv import read_xyz_csv
from img2imu_jax.render import read_png
from img2imu_jax.spectrogram import DEFAULT_IMAGE_SIZE, check_settings, spectrogram_image

# White space after the original and between tiles, in pixels.
ORIGINAL_GAP = 6
TILE_GAP = 2


def augment_grid(
    images: np.ndarray, spec: str, *, views: int = 6, seed: int = 0, **params: float
) -> np.ndarray:
    """Float RGB grid: one row per image, the original, a white gap, then `views` augmented views.

    View `v` of every image comes from `make_augment(spec, **params)` called with
    `fold_in(key(seed), v)`, so the same seed always draws the same picture.
    """
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"images must be [count, height, width, 3]; got shape {images.shape}")
    if not np.issubdtype(images.dtype, np.floating) or images.min() < 0 or images.max() > 1:
        raise ValueError("images must be floats in [0, 1]")
    if views < 1:
        raise ValueError(f"views must be at least 1; got {views}")
    augment = make_augment(spec, **params)
    keys = jax.vmap(jax.random.fold_in, in_axes=(None, 0))(jax.random.key(seed), np.arange(views))
    viewed = np.asarray(jax.jit(jax.vmap(augment, in_axes=(0, None)))(keys, images))
    count, height, width, _ = images.shape
    grid = np.ones(
        (
            count * height + (count - 1) * TILE_GAP,
            (views + 1) * width + ORIGINAL_GAP + (views - 1) * TILE_GAP,
            3,
        ),
        np.float32,
    )
    for row in range(count):
        top = row * (height + TILE_GAP)
        grid[top : top + height, :width] = images[row]
        for view in range(views):
            left = width + ORIGINAL_GAP + view * (width + TILE_GAP)
            grid[top : top + height, left : left + width] = viewed[view, row]
    return grid


def plot_augment_grid(
    images: np.ndarray, row_labels: Sequence[str], spec: str, path: str | os.PathLike, *,
    views: int = 6, seed: int = 0, **params: float
) -> None:
    """`augment_grid` as a figure to read: columns titled original, view 1…, rows named, the
    spec (and any parameters) in the title."""
    from img2imu_jax.reports import pyplot, save_figure

    if len(row_labels) != len(images):
        raise ValueError(f"{len(row_labels)} row labels for {len(images)} images")
    grid = augment_grid(images, spec, views=views, seed=seed, **params)
    height, width = np.asarray(images).shape[1:3]
    columns = [width / 2] + [width + ORIGINAL_GAP + v * (width + TILE_GAP) + width / 2
                             for v in range(views)]
    plt = pyplot()
    scale = 1.6 / height
    figure, axes = plt.subplots(figsize=(1.5 + grid.shape[1] * scale, 0.8 + grid.shape[0] * scale))
    axes.imshow(grid)
    axes.set_xticks(columns, ["original"] + [f"view {v + 1}" for v in range(views)], fontsize=8)
    axes.set_yticks([r * (height + TILE_GAP) + height / 2 for r in range(len(images))],
                    list(row_labels), fontsize=8)
    axes.tick_params(length=0)
    axes.xaxis.tick_top()
    for side in axes.spines.values():
        side.set_visible(False)
    shown = ", ".join(f"{k}={v:g}" for k, v in params.items())
    axes.set_xlabel(f"random views of {spec!r}" + (f" ({shown})" if shown else "")
                    + f", seed {seed}", fontsize=9)
    save_figure(plt, figure, path)


def grid_inputs(
    photos: Sequence[str | os.PathLike] = (),
    windows: Sequence[str | os.PathLike] = (),
    *,
    sample_rate: float,
    nfft: int,
    noverlap: int,
    image_size: tuple[int, int] = DEFAULT_IMAGE_SIZE,
) -> np.ndarray:
    """Photos squashed to `image_size` and accelerometer CSV windows rendered as spectrograms
    (a window with a timestamp column is first interpolated onto `sample_rate`)."""
    if windows:
        check_settings(sample_rate, nfft, noverlap)
    tiles = [read_png(path, size=image_size) for path in photos]
    tiles += [
        np.asarray(spectrogram_image(read_xyz_csv(path, sample_rate=sample_rate).samples,
                                     sample_rate=sample_rate, nfft=nfft, noverlap=noverlap,
                                     image_size=image_size))
        for path in windows
    ]
    if not tiles:
        raise ValueError("give at least one photo or one window")
    return np.stack(tiles)
