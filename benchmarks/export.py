"""Benchmark an exported classifier: LiteRT (.tflite, float32 and int8, on the CPU) against our
jitted JAX function, one window at a time (as a phone classifies), raw window → probabilities.

Without --classifier it saves a ResNet-18 (width 64, random weights: latency and size do not
depend on the values) classifier of BasicMotions' four classes, 5 s windows at 50 Hz, whose
"fold" tests on every fifth case. Prints each program's size and per-window median latency,
the float program's max probability difference from JAX, and the int8 program's macro-F1
change on its fold's test windows (meaningful only for a trained --classifier, e.g. one of
`img2imu finetune`'s models/), and writes everything as JSON.

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
from img2imu_jax.export import (export_litert, probability_function,  # noqa: E402
                                read_description, window_length)
from img2imu_jax.models.resnet import ResNet  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classifier", default=None, help="a saved classifier directory")
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--out", default="benchmarks/out/export.json")
    args = parser.parse_args()
    work = pathlib.Path(tempfile.mkdtemp(prefix="img2imu_export_"))
    source = args.classifier or random_classifier(work / "clf")
    classifier, frontend, meta = load_classifier(source)
    programs = {"float32": export_litert(source, work / "clf.tflite"),
                "int8": export_litert(source, work / "clf_int8.tflite", int8=True)}
    window = np.random.default_rng(0).normal(size=(1, window_length(meta), 3)).astype(np.float32)

    ours = jax.jit(probability_function(classifier, frontend))
    expected = np.asarray(ours(window))
    jax_time = time_calls(lambda: ours(window).block_until_ready(), args.repeats)
    record = {"classifier": str(source), "depth": meta["depth"], "width": meta["width"],
              "window": list(window.shape), "jax_cpu": jax_time,
              "jax_device": str(jax.devices()[0]),
              "machine": platform.processor() or platform.machine()}
    print(f"ResNet-{meta['depth']} width {meta['width']}, window {window.shape}; per window, "
          f"median of {args.repeats}: JAX jit {jax_time['median_s'] * 1e3:.2f} ms")
    for kind, path in programs.items():
        run = litert_call(path, window)
        timed = time_calls(run, args.repeats)
        record[kind] = {"tflite_bytes": path.stat().st_size, "litert_cpu": timed,
                        "max_probability_difference": float(np.abs(run() - expected).max())}
        print(f"LiteRT {kind}: {path.stat().st_size / 2**20:.1f} MiB, "
              f"{timed['median_s'] * 1e3:.2f} ms "
              f"({timed['median_s'] / jax_time['median_s']:.2f}x JAX), max |probability "
              f"difference| {record[kind]['max_probability_difference']:.2e}")
    quantised = read_description(programs["int8"])["int8"]
    record["int8"]["evaluation"] = quantised
    print(f"int8 on the fold's {quantised['test_windows']} test windows: macro-F1 "
          f"{100 * quantised['macro_f1_float']:.1f} % float -> "
          f"{100 * quantised['macro_f1_int8']:.1f} % int8, same class on "
          f"{100 * quantised['agreement']:.1f} %")
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {out}")


def random_classifier(directory: pathlib.Path) -> pathlib.Path:
    """A width-64 ResNet-18 classifier of BasicMotions' classes with a fold of its cases."""
    from img2imu_jax.imu.registry import load_dataset

    dataset = load_dataset("basicmotions")
    cases = list(dataset.subjects)
    return save_classifier(
        directory, Classifier(ResNet(18, rngs=nnx.Rngs(0)), len(dataset.classes),
                              rngs=nnx.Rngs(1)),
        Frontend(50.0, 128, 120),
        {"classes": list(dataset.classes), "seconds": 5.0, "overlap": 0.5,
         "dataset": dataset.name, "encoder": "random", "mode": "linear",
         "source_sample_rate": dataset.recordings[0].sample_rate,
         "source": {"dataset": "basicmotions", "data_dir": "", "generic_sample_rate": 0.0,
                    "label_rule": "single"},
         "train_subjects": [c for i, c in enumerate(cases) if i % 5],
         "test_subjects": cases[::5]})


def litert_call(path: pathlib.Path, window: np.ndarray):
    """One window through a LiteRT interpreter (XNNPACK, as on a phone), as a call to time."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    interpreter.allocate_tensors()
    given, = interpreter.get_input_details()
    taken, = interpreter.get_output_details()

    def run():
        interpreter.set_tensor(given["index"], window)
        interpreter.invoke()
        return interpreter.get_tensor(taken["index"])

    return run


if __name__ == "__main__":
    main()
