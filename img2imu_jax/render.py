"""Host-side glue between files and the spectrogram frontend: CSV window in, PNG out."""

from __future__ import annotations

import os

import jax.numpy as jnp
import numpy as np
from PIL import Image

from img2imu_jax.imu.xyz_csv import XYZRecording, read_xyz_csv
from img2imu_jax.spectrogram import DEFAULT_IMAGE_SIZE, check_settings, spectrogram_image


def render_csv(
    csv_path: str | os.PathLike,
    png_path: str | os.PathLike,
    *,
    sample_rate: float | None,
    nfft: int,
    noverlap: int,
    image_size: tuple[int, int] = DEFAULT_IMAGE_SIZE,
    columns: str | None = None,
) -> tuple[np.ndarray, XYZRecording]:
    """Renders the window in `csv_path` to an RGB PNG; returns the float image `[H, W, 3]` and
    the recording it came from.

    `sample_rate` None: the rate of the CSV's timestamp column (an error without one).
    """
    if sample_rate is not None:
        check_settings(sample_rate, nfft, noverlap)  # before reading anything
    recording = read_xyz_csv(csv_path, columns=columns, sample_rate=sample_rate)
    if recording.sample_rate is None:
        raise ValueError(f"{os.fspath(csv_path)} has no timestamp column; give its sample rate "
                         "(--sample-rate HZ)")
    image = np.asarray(
        spectrogram_image(
            jnp.asarray(recording.samples), sample_rate=recording.sample_rate, nfft=nfft,
            noverlap=noverlap, image_size=image_size,
        )
    )
    write_png(image, png_path)
    return image, recording


def write_png(image: np.ndarray, path: str | os.PathLike) -> None:
    """Writes a float RGB image in [0, 1] as 8-bit PNG, creating the folder if needed."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    pixels = np.clip(np.rint(np.asarray(image) * 255.0), 0, 255).astype(np.uint8)
    Image.fromarray(pixels).save(path)


def read_png(path: str | os.PathLike, size: tuple[int, int] | None = None) -> np.ndarray:
    """Reads an image as float RGB in [0, 1], optionally resized bilinearly to (height, width)."""
    with Image.open(path) as image:
        rgb = image.convert("RGB")
        if size is not None:
            rgb = rgb.resize((size[1], size[0]), Image.BILINEAR)
        return np.asarray(rgb, np.float32) / 255.0
