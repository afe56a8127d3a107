"""Benchmark an exported classifier: LiteRT (.tflite, on the CPU) against our jitted JAX
function, one window at a time (as a phone classifies), both raw window → probabilities.

Without --classifier it saves a ResNet-18 (width 64, random weights: latency and size do not
depend on the values) classifier of 5 s windows at 50 Hz. Prints the .tflite size, per-window
median latency of each, the max probability difference, and writes everything as JSON.

    .venv/bin/python benchmarks/export.py [--classifier DIR] [--out benchmarks/out/export.json]
"""

from __future__ import annotations

import argparse
import json
import pathlib
import platform
import sys
import tempfile

import jax
import numpy as np
from flax import nnx

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from timing import time_calls  # noqa: E402  benchmarks/timing.py

from img2imu_jax.classifier import Classifier, Frontend, load_classifier, save_classifier  # noqa: E402
from img2imu_jax.export import export_litert, probability_function, window_length  # noqa: E402
from img2imu_jax.models.resnet import ResNet  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classifier", default=None, help="a saved classifier directory")
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--out", default="benchmarks/out/export.json")
    args = parser.parse_args()
    work = pathlib.Path(tempfile.mkdtemp(prefix="img2imu_export_"))
    source = args.classifier or save_classifier(
        work / "clf", Classifier(ResNet(18, rngs=nnx.Rngs(0)), 6, rngs=nnx.Rngs(1)),
        Frontend(50.0, 128, 120), {"classes": [f"c{i}" for i in range(6)], "seconds": 5.0,
                                   "overlap": 0.5, "dataset": "random", "encoder": "random",
                                   "mode": "linear", "source_sample_rate": 50.0})
    classifier, frontend, meta = load_classifier(source)
    tflite = export_litert(source, work / "clf.tflite")
    window = np.random.default_rng(0).normal(size=(1, window_length(meta), 3)).astype(np.float32)

    ours = jax.jit(probability_function(classifier, frontend))
    expected = np.asarray(ours(window))
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(tflite))
    interpreter.allocate_tensors()
    given, = interpreter.get_input_details()
    taken, = interpreter.get_output_details()

    def litert():
        interpreter.set_tensor(given["index"], window)
        interpreter.invoke()
        return interpreter.get_tensor(taken["index"])

    difference = float(np.abs(litert() - expected).max())
    jax_time = time_calls(lambda: ours(window).block_until_ready(), args.repeats)
    litert_time = time_calls(litert, args.repeats)
    record = {"classifier": str(source), "depth": meta["depth"], "width": meta["width"],
              "window": list(window.shape), "tflite_bytes": tflite.stat().st_size,
              "jax_cpu": jax_time, "litert_cpu": litert_time,
              "max_probability_difference": difference, "jax_device": str(jax.devices()[0]),
              "machine": platform.processor() or platform.machine()}
    print(f"ResNet-{meta['depth']} width {meta['width']}, window {window.shape}: "
          f".tflite {record['tflite_bytes'] / 2**20:.1f} MiB")
    print(f"per window (median of {args.repeats}): JAX jit {jax_time['median_s'] * 1e3:.2f} ms, "
          f"LiteRT {litert_time['median_s'] * 1e3:.2f} ms "
          f"(LiteRT/JAX {litert_time['median_s'] / jax_time['median_s']:.2f}x); "
          f"max |probability difference| {difference:.2e}")
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
