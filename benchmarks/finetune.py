"""Benchmark the downstream hot paths: feature extraction and the few-shot protocol's wall time.

Part 1, feature extraction: windows/s of the frozen encoder path `extract_features` runs
(spectrogram → ImageNet normalisation → ResNet-18 features, one jitted function) on 5 s windows
at 50 Hz, [N, 250, 3] float32, compared in the same run with

  (a) the same jitted path fed one window at a time (batch 1), as the authors' app does, over a
      smaller N; and
  (b) the theoretical limit: model FLOPs per window (XLA's cost analysis of the compiled batched
      function, divided by the batch) at the device's peak FLOP/s (`--peak-tflops`, or a known
      accelerator's; none on a CPU, where only the achieved GFLOP/s is reported).

Steady-state figures come from one compiled copy of exactly the function `extract_features`
builds, fed batch by batch as `classifier.in_batches` feeds it, after a warm-up; compile time is
reported separately. `extract_features` itself is also timed as called, a first and a second
call (whatever tracing and compiling each does included, and reported), and checked to give the
same features.

Part 2, the protocol: wall time of `img2imu_jax.finetune.protocol.evaluate` for one randomly
initialised encoder on one dataset (default BasicMotions, bundled with sktime; the recipe
`configs/finetune_<dataset>.py` gives window length, label rule, shots, folds and epochs), split
into feature extraction (every `extract_features` call of the grid), linear-head training,
full fine-tuning (with `--modes linear,finetune`) and the rest, with the compile time inside
each. Goal (one H100): the full protocol for one encoder over all four paper datasets < 5 min.

    .venv/bin/python benchmarks/finetune.py [--width 64] [--n 8192] [--grid full|small]
        [--modes linear[,finetune]] [--dataset basicmotions] [--data-dir DIR]
        [--out benchmarks/out/finetune.json]
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import dataclasses
import datetime
import functools
import json
import os
import pathlib
import platform
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

import flax
import jax
import jaxlib
import numpy as np
import optax
from flax import nnx

from timing import COMPILE_EVENT_PREFIX, compile_phases, time_calls  # benchmarks/timing.py

from img2imu_jax.finetune import protocol, training
from img2imu_jax.classifier import Features, Frontend
from img2imu_jax.config import load_config
from img2imu_jax.finetune.config import validate_finetune
from img2imu_jax.imu.registry import load_dataset
from img2imu_jax.imu.windows import make_windows
from img2imu_jax.models.resnet import ResNet

ROOT = pathlib.Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"
GOAL_PROTOCOL_S = 300.0  # one encoder, all four paper datasets, one H100
# The real copies of published datasets in `shared/datasets/`, found by walking up from here
# when --data-dir is not given (as the tests find them).
SHARED_COPIES = {"wisdm2019": "wisdm2019_watch_accel_6act", "daphnet": "daphnet_fog"}
SMALL_GRID = ((64, 128), (8,))  # nfft values x gaps (noverlap = nfft - gap)
# Peak dense FLOP/s for the float32 encoder, matched against `device_kind` in order (first hit
# wins). On these GPUs XLA runs float32 convolutions and matmuls on TF32 tensor cores by
# default (jax_default_matmul_precision unset), so the TF32 dense figure is the ceiling.
PEAK_FP32_MODEL = (
    (("H100", "PCIe"), 378e12),
    (("H100",), 494.7e12),
    (("H200",), 494.7e12),
    (("A100",), 156e12),
)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", default="extract,protocol",
                        help="comma-separated: extract (part 1), protocol (part 2)")
    parser.add_argument("--width", type=int, default=64, help="ResNet-18 width; narrow on a CPU")
    # Part 1.
    parser.add_argument("--n", type=int, default=8192, help="windows timed in batches")
    parser.add_argument("--batch", type=int, default=1024, help="extract_features batch_size")
    parser.add_argument("--n-single", type=int, default=64,
                        help="windows timed one at a time (comparison (a))")
    parser.add_argument("--samples", type=int, default=250, help="samples per window (5 s, 50 Hz)")
    parser.add_argument("--sample-rate", type=float, default=50.0)
    parser.add_argument("--nfft", type=int, default=128)
    parser.add_argument("--noverlap", type=int, default=120)
    parser.add_argument("--repeats", type=int, default=3, help="timed passes over the N windows")
    parser.add_argument("--peak-tflops", type=float, default=None,
                        help="peak FLOP/s (in TFLOP/s) for the fraction; default: a known GPU's "
                             "TF32 dense peak, none on a CPU")
    # Part 2.
    parser.add_argument("--dataset", default="basicmotions",
                        help="a registry name with a configs/finetune_<name>.py recipe")
    parser.add_argument("--data-dir", default=None,
                        help="the dataset's files (default: the shared/datasets copy, if any)")
    parser.add_argument("--modes", default="linear", help="linear or linear,finetune")
    parser.add_argument("--grid", choices=("full", "small"), default="full",
                        help="full: the paper's 16 settings; small: nfft (64, 128) x gap 8")
    parser.add_argument("--shots", default=None, help="e.g. 1,2,5,10 (default: the recipe's)")
    parser.add_argument("--folds", type=int, default=None, help="default: the recipe's")
    parser.add_argument("--epochs", type=int, default=None, help="linear head; default: recipe's")
    parser.add_argument("--seconds", type=float, default=None, help="window; default: recipe's")
    parser.add_argument("--finetune-epochs", type=int, default=None,
                        help="phase-2 epochs of the full fine-tune (default: the recipe's 100)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", "--json", dest="out", type=pathlib.Path,
                        default=pathlib.Path("benchmarks/out/finetune.json"))
    args = parser.parse_args(argv)
    args.parts = tuple(part for part in args.parts.split(",") if part)
    if not args.parts or set(args.parts) - {"extract", "protocol"}:
        parser.error(f"--parts must name extract and/or protocol; got {args.parts}")
    args.modes = tuple(mode for mode in args.modes.split(",") if mode)
    if args.shots is not None:
        args.shots = tuple(int(n) for n in args.shots.split(","))
    return args


# ----------------------------------------------------------------------------- timing helpers

def peak_flops(args: argparse.Namespace, device_kind: str) -> tuple[float | None, str]:
    if args.peak_tflops:
        return args.peak_tflops * 1e12, "--peak-tflops"
    if jax.default_backend() == "cpu":
        return None, "none on a CPU"
    for names, peak in PEAK_FP32_MODEL:
        if all(name in device_kind for name in names):
            return peak, f"TF32 dense peak of {' '.join(names)} (data sheet)"
    return None, f"unknown for {device_kind!r}; pass --peak-tflops"


def versions() -> dict[str, str]:
    return {"python": platform.python_version(), "jax": jax.__version__,
            "jaxlib": jaxlib.__version__, "flax": flax.__version__, "optax": optax.__version__,
            "numpy": np.__version__}


# ----------------------------------------------------------------- part 1: feature extraction

def random_windows(n: int, samples: int, seed: int) -> np.ndarray:
    """Float32 [n, samples, 3]; the encoder's cost does not depend on the values."""
    return np.random.default_rng(seed).standard_normal((n, samples, 3)).astype(np.float32)


def feature_function(encoder: nnx.Module, settings: dict[str, Any]):
    """The function `extract_features` jits (via `in_batches`), built once: `(jitted, state)`."""
    encoder.eval()
    graphdef, state = nnx.split(encoder)
    features = Features(Frontend(**settings))
    jitted = jax.jit(lambda state, batch: features(nnx.merge(graphdef, state), batch))
    return jitted, state


def fed_in_batches(compiled, state, windows: np.ndarray, batch_size: int) -> np.ndarray:
    """`in_batches`' loop: host batches, the last one padded, features back on the host."""
    chunks = []
    for start in range(0, len(windows), batch_size):
        batch = windows[start:start + batch_size]
        padded = np.pad(batch, ((0, batch_size - len(batch)),) + ((0, 0),) * (batch.ndim - 1))
        chunks.append(np.asarray(compiled(state, padded))[: len(batch)])
    return np.concatenate(chunks)


def compile_for(jitted, state, batch_size: int, samples: int) -> tuple[Any, float, float]:
    """AOT-compiled copy for one batch shape, its compile seconds and XLA's FLOPs per call."""
    shape = jax.ShapeDtypeStruct((batch_size, samples, 3), np.float32)
    start = time.perf_counter()
    compiled = jitted.lower(state, shape).compile()
    seconds = time.perf_counter() - start
    cost = compiled.cost_analysis()
    flops = float((cost[0] if isinstance(cost, list) else cost or {}).get("flops", 0.0))
    return compiled, seconds, flops


def measure_extraction(args: argparse.Namespace, device_kind: str) -> dict[str, Any]:
    settings = {"sample_rate": args.sample_rate, "nfft": args.nfft, "noverlap": args.noverlap}
    encoder = ResNet(18, width=args.width, rngs=nnx.Rngs(0))
    windows = random_windows(args.n, args.samples, args.seed)
    single_windows = windows[: args.n_single]
    jitted, state = feature_function(encoder, settings)
    batch_size = min(args.batch, args.n)

    batched, batched_compile_s, batched_flops = compile_for(jitted, state, batch_size, args.samples)
    single, single_compile_s, single_flops = compile_for(jitted, state, 1, args.samples)
    flops_per_window = batched_flops / batch_size

    reference = fed_in_batches(batched, state, windows, batch_size)  # warm-up
    batched_timing = time_calls(lambda: fed_in_batches(batched, state, windows, batch_size),
                                args.repeats)
    fed_in_batches(single, state, single_windows[:2], 1)  # warm-up
    single_timing = time_calls(lambda: fed_in_batches(single, state, single_windows, 1),
                               args.repeats)

    as_called = {}
    for call in ("first", "second"):
        with compile_phases() as phases:
            start = time.perf_counter()
            features = training.extract_features(encoder, windows, batch_size=args.batch,
                                                 **settings)
            as_called[call] = {"median_s": time.perf_counter() - start, "windows": args.n,
                               "batch_size": batch_size, "compile_s": sum(phases.values()),
                               "compile_phases_s": dict(phases)}

    peak, peak_source = peak_flops(args, device_kind)
    routes = {
        "batched": batched_timing | {"windows": args.n, "batch_size": batch_size,
                                     "compile_s": batched_compile_s},
        "one_at_a_time": single_timing | {"windows": len(single_windows), "batch_size": 1,
                                          "compile_s": single_compile_s},
        # One call each, wall time including whatever tracing and compiling the call does.
        "extract_features_first_call": as_called["first"],
        "extract_features_second_call": as_called["second"],
    }
    for route in routes.values():
        route["windows_per_s"] = route["windows"] / route["median_s"]
        route["ms_per_window"] = 1e3 * route["median_s"] / route["windows"]
        route["achieved_flops_per_s"] = flops_per_window * route["windows_per_s"]
        route["fraction_of_peak"] = None if peak is None else route["achieved_flops_per_s"] / peak
    return {
        "model": {"depth": 18, "width": args.width, "features": encoder.features,
                  "dtype": "float32"},
        "settings": settings | {"samples": args.samples},
        "flops_per_window": flops_per_window,
        "flops_per_window_batch1": single_flops,
        "peak_flops_per_s": peak,
        "peak_source": peak_source,
        "limit_windows_per_s": None if peak is None else peak / flops_per_window,
        "routes": routes,
        "batched_over_one_at_a_time": (routes["batched"]["windows_per_s"]
                                       / routes["one_at_a_time"]["windows_per_s"]),
        "max_abs_diff_as_called_vs_steady": float(np.abs(features - reference).max()),
    }


# ------------------------------------------------------------------------ part 2: the protocol

class PhaseClock:
    """Wall and compile seconds per phase of `evaluate`, by wrapping the module's functions.

    Only the outermost wrapped call counts (the head phase of a full fine-tune is part of the
    fine-tune), and results are waited for before a phase stops its clock, so asynchronous
    dispatch does not bill one phase's device work to the next.
    """

    PHASES: ClassVar[dict[str, str]] = {"frontend_features": "feature_extraction",
                                        "train_linear_head": "linear_heads",
                                        "predict": "linear_predictions",
                                        "full_finetune": "full_finetune",
                                        "class_probabilities": "finetune_predictions"}

    def __init__(self) -> None:
        self.wall = collections.defaultdict(float)
        self.compile = collections.defaultdict(float)
        self.calls = collections.Counter()
        self.active: str | None = None

    def listener(self, event: str, seconds: float, **kwargs: Any) -> None:
        if event.startswith(COMPILE_EVENT_PREFIX):
            self.compile[self.active or "other"] += seconds

    def wrap(self, phase: str, fn: Callable) -> Callable:
        @functools.wraps(fn)
        def timed(*args, **kwargs):
            if self.active is not None:
                return fn(*args, **kwargs)
            self.active = phase
            start = time.perf_counter()
            try:
                return jax.block_until_ready(fn(*args, **kwargs))
            finally:
                self.wall[phase] += time.perf_counter() - start
                self.calls[phase] += 1
                self.active = None
        return timed

    @contextlib.contextmanager
    def patched(self) -> Iterator[PhaseClock]:
        originals = {name: getattr(protocol, name) for name in self.PHASES}
        for name, phase in self.PHASES.items():
            setattr(protocol, name, self.wrap(phase, originals[name]))
        jax.monitoring.register_event_duration_secs_listener(self.listener)
        try:
            yield self
        finally:
            jax.monitoring.unregister_event_duration_listener(self.listener)
            for name, fn in originals.items():
                setattr(protocol, name, fn)


def default_data_dir(dataset: str) -> str | None:
    folder = SHARED_COPIES.get(dataset)
    if folder is None:
        return None
    for parent in pathlib.Path(__file__).resolve().parents:
        candidate = parent / "shared" / "datasets" / folder
        if candidate.is_dir():
            return str(candidate)
    return None


def measure_protocol(args: argparse.Namespace) -> dict[str, Any]:
    recipe = CONFIGS / f"finetune_{args.dataset}.py"
    config = load_config(recipe, checks=validate_finetune)
    if not args.modes or set(args.modes) - set(protocol.MODES):
        raise ValueError(f"--modes must be among {protocol.MODES}; got {args.modes}")
    data_dir = args.data_dir or default_data_dir(args.dataset)
    seconds = args.seconds or config.data.seconds
    shots = args.shots or tuple(config.shots)
    folds = args.folds or config.folds
    epochs = args.epochs or config.epochs
    nffts, gaps = ((config.grid_nfft, config.grid_gaps) if args.grid == "full" else SMALL_GRID)
    grid = protocol.spectrogram_grid(nffts, gaps)
    full = training.FullFinetune(**config.finetune)
    if args.finetune_epochs:
        full = training.FullFinetune(**(config.finetune.to_dict()
                                        | {"epochs": args.finetune_epochs}))

    start = time.perf_counter()
    dataset = load_dataset(args.dataset, data_dir)
    windows = make_windows(dataset, seconds=seconds, sample_rate=config.data.sample_rate,
                           label_rule=config.data.label_rule)
    load_s = time.perf_counter() - start
    encoder = ResNet(18, width=args.width, rngs=nnx.Rngs(args.seed))

    with PhaseClock().patched() as clock:
        start = time.perf_counter()
        try:
            results, _ = protocol.evaluate(encoder, windows, modes=args.modes, shots=shots,
                                           folds=folds, grid=grid, seed=args.seed,
                                           epochs=epochs, full=full)
        except ValueError as e:
            if "shots" not in str(e):
                raise
            sys.exit(f"{e}: pass a smaller --shots (the partial Daphnet copy in shared/ "
                     "supports 1,2,5,10,20)")
        total_s = time.perf_counter() - start
    phases = {phase: {"wall_s": clock.wall[phase], "compile_s": clock.compile[phase],
                      "calls": clock.calls[phase]}
              for phase in PhaseClock.PHASES.values() if clock.calls[phase]}
    phases["other"] = {"wall_s": total_s - sum(clock.wall.values()),
                       "compile_s": clock.compile["other"], "calls": None}
    return {
        "dataset": dataset.name, "data_dir": data_dir, "windows": len(windows),
        "samples_per_window": int(windows.samples.shape[1]), "classes": len(windows.classes),
        "subjects": len(set(windows.subjects.tolist())), "seconds": seconds,
        "label_rule": config.data.label_rule, "modes": list(args.modes), "shots": list(shots),
        "folds": folds, "epochs": epochs, "grid": [list(s) for s in grid],
        "full_finetune": dataclasses.asdict(full) if "finetune" in args.modes else None,
        "load_and_window_s": load_s, "evaluate_s": total_s,
        "compile_s": sum(clock.compile.values()), "phases": phases,
        "macro_f1_mean": {mode: {str(n): r["mean"] for n, r in by_n.items()}
                          for mode, by_n in results.items()},
        "goal_s_four_datasets": GOAL_PROTOCOL_S,
    }


# ------------------------------------------------------------------------------------ report

def report(record: dict[str, Any]) -> None:
    device = record["device"]
    print(f"devices: {device['devices']} (kind {device['device_kind']!r}), "
          f"cpu_count: {device['cpu_count']}")
    print("versions: " + ", ".join(f"{k} {v}" for k, v in record["versions"].items()))
    extraction = record.get("extraction")
    if extraction:
        model, s = extraction["model"], extraction["settings"]
        print(f"\n1. feature extraction: ResNet-18 width {model['width']} ({model['features']} "
              f"features, float32), windows {s['samples']} samples x 3 at {s['sample_rate']:g} "
              f"Hz, nfft {s['nfft']}, noverlap {s['noverlap']}")
        print(f"   model FLOPs per window (XLA cost analysis, batch "
              f"{extraction['routes']['batched']['batch_size']}): "
              f"{extraction['flops_per_window'] / 1e9:.3f} GFLOP "
              f"(batch-1 program: {extraction['flops_per_window_batch1'] / 1e9:.3f})")
        print(f"   {'route':<38}{'windows':>8}{'windows/s':>12}{'ms/window':>11}"
              f"{'GFLOP/s':>10}{'of peak':>9}{'compile s':>11}")
        labels = {"batched": "batched, steady state",
                  "one_at_a_time": "(a) one window at a time, steady",
                  "extract_features_first_call": "extract_features, 1st call",
                  "extract_features_second_call": "extract_features, 2nd call"}
        for key, label in labels.items():
            r = extraction["routes"][key]
            fraction = ("n/a" if r["fraction_of_peak"] is None
                        else f"{100 * r['fraction_of_peak']:.1f}%")
            print(f"   {label:<38}{r['windows']:>8}{r['windows_per_s']:>12.1f}"
                  f"{r['ms_per_window']:>11.3f}{r['achieved_flops_per_s'] / 1e9:>10.1f}"
                  f"{fraction:>9}{r['compile_s']:>11.2f}")
        print(f"   batched / one at a time: {extraction['batched_over_one_at_a_time']:.1f}x")
        if extraction["peak_flops_per_s"] is None:
            print(f"   (b) limit at peak: n/a (peak {extraction['peak_source']})")
        else:
            print(f"   (b) limit at peak {extraction['peak_flops_per_s'] / 1e12:.1f} TFLOP/s "
                  f"({extraction['peak_source']}): {extraction['limit_windows_per_s']:.0f} "
                  f"windows/s")
        print(f"   extract_features vs the steady copy: max |diff| "
              f"{extraction['max_abs_diff_as_called_vs_steady']:.2e}")
    protocol = record.get("protocol")
    if protocol:
        p = protocol
        print(f"\n2. protocol on {p['dataset']}: {p['windows']} windows of {p['seconds']:g} s "
              f"({p['samples_per_window']} samples), {p['classes']} classes, {p['subjects']} "
              f"subjects; modes {','.join(p['modes'])}; shots {p['shots']}; {p['folds']} folds; "
              f"{len(p['grid'])} grid settings; head epochs {p['epochs']}")
        print(f"   load + window: {p['load_and_window_s']:.2f} s (not in the total)")
        print(f"   {'phase':<24}{'wall s':>9}{'share':>8}{'compile s':>11}{'calls':>7}")
        for phase, x in p["phases"].items():
            calls = "" if x["calls"] is None else x["calls"]
            print(f"   {phase:<24}{x['wall_s']:>9.2f}{100 * x['wall_s'] / p['evaluate_s']:>7.1f}%"
                  f"{x['compile_s']:>11.2f}{calls:>7}")
        print(f"   {'evaluate total':<24}{p['evaluate_s']:>9.2f}{'100.0%':>8}"
              f"{p['compile_s']:>11.2f}")
        print(f"   goal on one H100: all four paper datasets < {p['goal_s_four_datasets']:.0f} s "
              f"for one encoder; this dataset took {p['evaluate_s']:.1f} s on "
              f"{record['device']['device_kind']}")
        for mode, by_n in p["macro_f1_mean"].items():
            scores = ", ".join(f"{n}-shot {f1:.3f}" for n, f1 in by_n.items())
            print(f"   mean test macro-F1 ({mode}, random-init encoder): {scores}")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    device_kind = jax.devices()[0].device_kind
    record: dict[str, Any] = {
        "timestamp_utc": datetime.datetime.now(datetime.UTC).isoformat(),
        "argv": sys.argv if argv is None else ["benchmarks/finetune.py", *argv],
        "args": {key: str(value) if isinstance(value, pathlib.Path) else value
                 for key, value in vars(args).items()},
        "versions": versions(),
        "device": {"backend": jax.default_backend(),
                   "devices": [str(device) for device in jax.devices()],
                   "device_kind": device_kind, "cpu_count": os.cpu_count()},
    }
    if "extract" in args.parts:
        record["extraction"] = measure_extraction(args, device_kind)
    if "protocol" in args.parts:
        record["protocol"] = measure_protocol(args)
    report(record)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
