"""The persistent compilation cache: wall time of `img2imu pretrain` started three times on
the same config — cache off, cache cold (first start), cache warm (second start) — in one run.

Each start is a fresh process on a fresh workdir (the bundled photos, prepared once before
timing), so the only difference between the cold and the warm start is the cache. Prints a
table and writes JSON (`--out`).

    python benchmarks/compile_cache.py --out compile_cache.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OVERRIDES = ["model.width=16", "batch_size=16", "moco.queue_size=64", "total_steps=3",
             "checkpoint_every=3", "log_every=1", "data.shuffle_buffer=32"]


def start(scratch: Path, name: str, cache: str) -> float:
    """Seconds for one `img2imu pretrain` process, start to exit."""
    command = [sys.executable, "-m", "img2imu_jax.cli", "pretrain", "--config",
               str(ROOT / "configs" / "demo.py"), "--workdir", str(scratch / name),
               *[f"--config.{o}" for o in OVERRIDES + [f"data.data_dir={scratch / 'tfds'}",
                                                     f"compilation_cache_dir={cache!r}"]]]
    env = {k: v for k, v in os.environ.items() if k != "JAX_COMPILATION_CACHE_DIR"}
    began = time.perf_counter()
    subprocess.run(command, env=env, check=True, capture_output=True, timeout=1800)
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=None, help="write the figures here as JSON")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        from img2imu_jax.images.sources import load_builder

        load_builder("bundled_photos", scratch / "tfds")  # the input, prepared before timing
        cache = str(scratch / "cache")
        seconds = {"off": start(scratch, "off", ""), "cold": start(scratch, "cold", cache),
                   "warm": start(scratch, "warm", cache)}
        entries = len(list(Path(cache).iterdir()))
    print("| start | wall s |\n|---|---:|")
    for name, value in seconds.items():
        print(f"| {name} | {value:.1f} |")
    print(f"warm start is {seconds['cold'] - seconds['warm']:.1f} s "
          f"({seconds['cold'] / seconds['warm']:.2f}x) faster than the cold one; "
          f"{entries} cache entries")
    if args.out:
        Path(args.out).write_text(json.dumps({**seconds, "cache_entries": entries,
                                              "overrides": OVERRIDES}, indent=2) + "\n")


if __name__ == "__main__":
    main()
