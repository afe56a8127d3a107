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
