"""Benchmark the JAX spectrogram frontend against the CPU pipelines it replaces.

Three routes turn accelerometer windows [N, samples, 3] into [N, 96, 128, 3] RGB images:

  (a) ours        `img2imu_jax.spectrogram.spectrogram_image`, jitted, on the default JAX device;
  (b) scipy       a vectorised scipy.signal + numpy + Pillow pipeline making the same images;
  (c) matplotlib  the paper's route: `plt.specgram` rendered to a 640×480 canvas per axis,
                  then resized with Pillow (run on a subset, it is slow).

It also times the log-PSD stage alone, ours (one strided convolution) against
jax.scipy.signal.stft. It reports windows/s for each, the speed-ups of (a) over (b) and (c) against the goals, whether
(a) and (b) agree, and on a GPU the fraction of memory bandwidth (a) reaches. Everything printed
is also written as JSON to --out.

    .venv/bin/python benchmarks/spectrogram.py [--batch 4096] [--out benchmarks/out/spectrogram.json]
"""

from __future__ import annotations

import argparse
import datetime
import functools
import json
import os
import pathlib
import platform
import sys
import time
from typing import Any

import matplotlib

matplotlib.use("Agg")  # Must precede the pyplot import: render off-screen, as a batch job would.

import jax
import jax.numpy as jnp
import jaxlib
import matplotlib.pyplot as plt
import numpy as np
import PIL
import scipy
import scipy.signal
from PIL import Image

from timing import compile_phases, time_calls  # benchmarks/timing.py

from img2imu_jax.spectrogram import log_power_spectrogram, spectrogram_image

IMAGE_HEIGHT, IMAGE_WIDTH = 96, 128
GOAL_VS_SCIPY = 1.5
GOAL_VS_MATPLOTLIB = 100.0
MIN_CORRELATION = 0.99
AGREEMENT_WINDOWS = 64

# Peak HBM bandwidth in bytes/s, matched against `device_kind` in order (first hit wins), so
# the more specific names come first.
PEAK_BANDWIDTH = (
    (("H200",), 4.8e12),
    (("H100", "PCIe"), 2.0e12),
    (("H100",), 3.35e12),
    (("A100", "80GB"), 2.0e12),
)


def parse_args(argv: list[str]) -> argparse.Namespace:
    """Command-line settings; the defaults are the paper's 10 s windows at 50 Hz."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=4096, help="windows per timed batch")
    parser.add_argument("--samples", type=int, default=500, help="samples per window")
    parser.add_argument("--nfft", type=int, default=128)
    parser.add_argument("--noverlap", type=int, default=120)
    parser.add_argument("--sample-rate", type=float, default=50.0, help="Hz")
    parser.add_argument(
        "--matplotlib-subset", type=int, default=64, help="windows timed on the matplotlib route"
    )
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per route")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--out", type=pathlib.Path, default=pathlib.Path("benchmarks/out/spectrogram.json")
    )
    return parser.parse_args(argv)


def make_windows(batch: int, samples: int, sample_rate: float, seed: int) -> np.ndarray:
    """Float32 [batch, samples, 3]: a few random sinusoids per axis plus noise.

    Structured spectra exercise the dB range and min–max scaling like real motion does; pure
    noise would give nearly flat images on which any two renderers trivially agree.
    """
    rng = np.random.default_rng(seed)
    t = np.arange(samples) / sample_rate
    n_tones = 3
    freqs = rng.uniform(0.2, sample_rate / 2, size=(batch, 1, 3, n_tones))
    amps = rng.uniform(0.1, 2.0, size=(batch, 1, 3, n_tones))
    phases = rng.uniform(0, 2 * np.pi, size=(batch, 1, 3, n_tones))
    tones = amps * np.sin(2 * np.pi * freqs * t[None, :, None, None] + phases)
    noise = 0.3 * rng.standard_normal((batch, samples, 3))
    return (tones.sum(axis=-1) + noise).astype(np.float32)


def scipy_pillow_images(
    windows: np.ndarray, sample_rate: float, nfft: int, noverlap: int
) -> np.ndarray:
    """Route (b): the reference recipe with scipy's STFT over the whole batch, Pillow resizing.

    Only the resize loops over (window, axis): Pillow has no batched resize, and this is how a
    careful CPU implementation of the same images would be written.
    """
    _, _, power = scipy.signal.spectrogram(
        windows, sample_rate, window="hann", nperseg=nfft, noverlap=noverlap,
        detrend=False, axis=1,
    )  # [N, freq, axis, frame]
    db = 10 * np.log10(power)
    low = db.min(axis=(1, 3), keepdims=True)
    high = db.max(axis=(1, 3), keepdims=True)
    scaled = (db - low) / (high - low)
    # [N, axis, freq, frame] with the highest frequency on row 0, so low frequencies sit at the bottom.
    rows = np.ascontiguousarray(np.transpose(scaled, (0, 2, 1, 3))[:, :, ::-1], dtype=np.float32)
    images = np.empty((len(windows), IMAGE_HEIGHT, IMAGE_WIDTH, 3), np.float32)
    for i, window_rows in enumerate(rows):
        for axis, channel in enumerate(window_rows):
            resized = Image.fromarray(channel).resize((IMAGE_WIDTH, IMAGE_HEIGHT), Image.BILINEAR)
            images[i, :, :, axis] = np.asarray(resized)
    return images


def matplotlib_images(
    windows: np.ndarray, sample_rate: float, nfft: int, noverlap: int
) -> np.ndarray:
    """Route (c): the paper's renderer, one `plt.specgram` per axis on a 640×480 canvas.

    One figure is reused (its axes cleared per plot) so the timing measures rendering rather
    than figure construction, which a careful user of this route would also avoid.
    """
    fig = plt.figure(figsize=(6.4, 4.8), dpi=100)
    ax = fig.add_axes([0, 0, 1, 1])
    images = np.empty((len(windows), IMAGE_HEIGHT, IMAGE_WIDTH, 3), np.float32)
    try:
        for i, window in enumerate(windows):
            for axis in range(3):
                ax.clear()
                ax.specgram(window[:, axis], NFFT=nfft, Fs=sample_rate, noverlap=noverlap, cmap="gray")
                ax.axis("off")
                fig.canvas.draw()
                grey = np.asarray(fig.canvas.buffer_rgba())[:, :, 0]
                resized = Image.fromarray(grey).resize((IMAGE_WIDTH, IMAGE_HEIGHT), Image.BILINEAR)
                images[i, :, :, axis] = np.asarray(resized, np.float32) / 255.0
    finally:
        plt.close(fig)
    return images


@functools.partial(jax.jit, static_argnames=("sample_rate", "nfft", "noverlap"))
def jax_scipy_stft_log_psd(
    windows: jax.Array, *, sample_rate: float, nfft: int, noverlap: int
) -> jax.Array:
    """The log-PSD stage through jax.scipy.signal.stft: the baseline our strided-conv DFT replaces.

    Same dB values as `log_power_spectrogram` up to a constant (the density scaling), and the
    same `[..., frequency, frame, axis]` layout, so the two stages do the same work.
    """
    _, _, spectrum = jax.scipy.signal.stft(
        jnp.moveaxis(windows, -1, -2), fs=sample_rate, window="hann", nperseg=nfft,
        noverlap=noverlap, detrend=False, boundary=None, padded=False,
    )
    return jnp.moveaxis(10.0 * jnp.log10(spectrum.real**2 + spectrum.imag**2), -3, -1)


def agreement(ours: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    """Max abs difference and Pearson correlation per (window, channel) image, averaged."""
    a = ours.reshape(len(ours), -1, 3).astype(np.float64)
    b = reference.reshape(len(reference), -1, 3).astype(np.float64)
    a -= a.mean(axis=1, keepdims=True)
    b -= b.mean(axis=1, keepdims=True)
    corr = (a * b).sum(axis=1) / np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1))
    return {
        "max_abs_diff": float(np.abs(ours - reference).max()),
        "mean_correlation": float(np.nanmean(corr)),
        "min_correlation": float(np.nanmin(corr)),
    }


def peak_bandwidth(device_kind: str) -> float | None:
    """Peak memory bandwidth for a known accelerator, else None (no fraction is reported)."""
    for names, bandwidth in PEAK_BANDWIDTH:
        if all(name in device_kind for name in names):
            return bandwidth
    return None


def bandwidth_use(args: argparse.Namespace, seconds: float, device_kind: str) -> dict[str, Any]:
    """Achieved vs peak bandwidth of (a), counting only the unavoidable input and output bytes.

    This is a lower bound on traffic, so the fraction says how close the frontend gets to being
    purely memory-bound; intermediates (the STFT) would only add to the real figure.
    """
    moved = 4 * args.batch * (args.samples * 3 + IMAGE_HEIGHT * IMAGE_WIDTH * 3)
    achieved = moved / seconds
    peak = peak_bandwidth(device_kind)
    return {
        "bytes_moved_lower_bound": moved,
        "achieved_bytes_per_s": achieved,
        "peak_bytes_per_s": peak,
        "fraction_of_peak": None if peak is None else achieved / peak,
    }


def versions() -> dict[str, str]:
    """Library versions that determine the numbers, for comparing runs across machines."""
    return {
        "python": platform.python_version(),
        "jax": jax.__version__,
        "jaxlib": jaxlib.__version__,
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "matplotlib": matplotlib.__version__,
        "pillow": PIL.__version__,
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Time the three routes and check (a) against (b); returns the JSON-ready record."""
    settings = {"sample_rate": args.sample_rate, "nfft": args.nfft, "noverlap": args.noverlap}
    windows = make_windows(args.batch, args.samples, args.sample_rate, args.seed)
    on_device = jax.device_put(windows)

    def ours() -> jax.Array:
        return jax.block_until_ready(spectrogram_image(on_device, **settings))

    with compile_phases("spectrogram_image") as phases:
        start = time.perf_counter()
        ours_images = ours()
        first_call = time.perf_counter() - start
    ours_head = np.asarray(ours_images[:AGREEMENT_WINDOWS])
    del ours_images  # Frees the full batch of images before the host pipelines allocate theirs.
    ours_timing = time_calls(ours, args.repeats)
    ours_timing |= {
        "first_call_s": first_call,
        "compile_s": sum(phases.values()),
        "compile_phases_s": dict(phases),
    }

    stages = {}
    for name, stage in (("ours_conv_dft", log_power_spectrogram),
                        ("jax_scipy_stft", jax_scipy_stft_log_psd)):
        jax.block_until_ready(stage(on_device, **settings))
        stages[name] = time_calls(
            lambda stage=stage: jax.block_until_ready(stage(on_device, **settings)), args.repeats
        )

    # Warm-up of (b) on the first windows doubles as its half of the agreement check.
    reference = scipy_pillow_images(windows[:AGREEMENT_WINDOWS], **settings)
    scipy_timing = time_calls(lambda: scipy_pillow_images(windows, **settings), args.repeats)

    subset = windows[: args.matplotlib_subset]
    matplotlib_images(subset[:1], **settings)  # Warm up fonts, colormaps and the Agg canvas.
    matplotlib_timing = time_calls(lambda: matplotlib_images(subset, **settings), args.repeats)

    results = {
        "ours": ours_timing | {"windows": args.batch},
        "scipy_pillow": scipy_timing | {"windows": args.batch},
        "matplotlib": matplotlib_timing | {"windows": len(subset)},
    }
    for result in results.values():
        result["windows_per_s"] = result["windows"] / result["median_s"]

    vs_scipy = results["ours"]["windows_per_s"] / results["scipy_pillow"]["windows_per_s"]
    vs_matplotlib = results["ours"]["windows_per_s"] / results["matplotlib"]["windows_per_s"]
    device_kind = jax.devices()[0].device_kind
    return {
        "timestamp_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(),
        "argv": sys.argv,
        "args": {key: str(value) if isinstance(value, pathlib.Path) else value
                 for key, value in vars(args).items()},
        "versions": versions(),
        "device": {
            "backend": jax.default_backend(),
            "devices": [str(device) for device in jax.devices()],
            "device_kind": device_kind,
            "cpu_count": os.cpu_count(),
        },
        "results": results,
        "ratios": {
            "ours_over_scipy_pillow": vs_scipy,
            "ours_over_matplotlib": vs_matplotlib,
            "goal_over_scipy_pillow": GOAL_VS_SCIPY,
            "goal_over_matplotlib": GOAL_VS_MATPLOTLIB,
            "pass_over_scipy_pillow": vs_scipy >= GOAL_VS_SCIPY,
            "pass_over_matplotlib": vs_matplotlib >= GOAL_VS_MATPLOTLIB,
        },
        "log_psd_stage": stages,
        "agreement_ours_vs_scipy_pillow": agreement(ours_head, reference) | {"windows": len(reference)},
        "gpu_bandwidth": (
            bandwidth_use(args, results["ours"]["median_s"], device_kind)
            if jax.default_backend() == "gpu" else None
        ),
    }


def report(record: dict[str, Any]) -> None:
    """Print the record as a short table a person can paste into RESULTS.md."""
    device, results, ratios = record["device"], record["results"], record["ratios"]
    print(f"devices: {device['devices']} (kind {device['device_kind']!r}), "
          f"cpu_count: {device['cpu_count']}")
    print("versions: " + ", ".join(f"{name} {version}" for name, version in record["versions"].items()))
    args = record["args"]
    print(f"batch {args['batch']} × {args['samples']} samples × 3 axes, nfft {args['nfft']}, "
          f"noverlap {args['noverlap']}, fs {args['sample_rate']} Hz, "
          f"median of {args['repeats']} runs")
    print()
    labels = {
        "ours": "(a) ours (JAX)",
        "scipy_pillow": "(b) scipy+numpy+Pillow",
        "matplotlib": "(c) matplotlib specgram",
    }
    print(f"{'method':<26}{'windows':>9}{'windows/s':>13}{'s/batch':>10}")
    for key, label in labels.items():
        result = results[key]
        print(f"{label:<26}{result['windows']:>9}{result['windows_per_s']:>13.1f}"
              f"{result['median_s']:>10.3f}")
    ours = results["ours"]
    phases = ", ".join(f"{name.removesuffix('_duration')} {seconds:.2f} s"
                       for name, seconds in ours["compile_phases_s"].items())
    print(f"(a) compile {ours['compile_s']:.2f} s ({phases}); "
          f"first call incl. compile {ours['first_call_s']:.2f} s")
    stages = record["log_psd_stage"]
    print(f"log-PSD stage alone: ours (strided-conv DFT) {stages['ours_conv_dft']['median_s']:.3f} s,"
          f" jax.scipy.signal.stft {stages['jax_scipy_stft']['median_s']:.3f} s per batch")
    print()
    print(f"goal on CPU: >= {GOAL_VS_SCIPY:g}x (b), >= {GOAL_VS_MATPLOTLIB:g}x (c)")
    for name, key in (("(b)", "scipy_pillow"), ("(c)", "matplotlib")):
        ratio = ratios[f"ours_over_{key}"]
        verdict = "PASS" if ratios[f"pass_over_{key}"] else "MISS"
        print(f"ours / {name}: {ratio:8.1f}x  {verdict} (goal >= {ratios[f'goal_over_{key}']:g}x)")
    print()
    check = record["agreement_ours_vs_scipy_pillow"]
    print(f"(a) vs (b) on first {check['windows']} windows: max |diff| {check['max_abs_diff']:.2e}, "
          f"mean per-channel Pearson r {check['mean_correlation']:.6f} "
          f"(min {check['min_correlation']:.6f})")
    if not check["mean_correlation"] >= MIN_CORRELATION:
        print(f"WARNING: (a) and (b) disagree: mean correlation {check['mean_correlation']:.4f} "
              f"< {MIN_CORRELATION}; the images are not the same!")
    bandwidth = record["gpu_bandwidth"]
    if bandwidth is None:
        print("GPU memory bandwidth fraction: n/a (not on a GPU)")
    elif bandwidth["fraction_of_peak"] is None:
        print(f"GPU memory bandwidth: {bandwidth['achieved_bytes_per_s'] / 1e9:.1f} GB/s achieved "
              f"(lower bound); fraction n/a: no peak known for {device['device_kind']!r}")
    else:
        print(f"GPU memory bandwidth: {bandwidth['achieved_bytes_per_s'] / 1e9:.1f} GB/s achieved "
              f"(lower bound) of {bandwidth['peak_bytes_per_s'] / 1e9:.0f} GB/s peak = "
              f"{100 * bandwidth['fraction_of_peak']:.2f}%")


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark, print the table and write the JSON record."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    record = run(args)
    report(record)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
