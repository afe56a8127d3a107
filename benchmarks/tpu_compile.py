"""The pre-training step and its augmentations as XLA's TPU compiler costs them, from a CPU host.

For each recipe × topology: the whole step (`img2imu_jax.tpu_compile`, the trainer's own step),
its estimated cycles split by part (augmentation, encoder forward, encoder backward, loss,
optimizer, collectives, rest; each ENTRY instruction goes to the part its source frames name,
a fusion by its root's), the ten instructions with the most estimated cycles, and each
augmentation spec alone (one view, one chip's images, float32). All figures are the
compiler's estimates (Σ estimated_cycles at the chip's clock, FLOPs and bytes accessed as
bounds), never timings. Run it on two checkouts for a before/after comparison.

    PYTHONPATH=. python benchmarks/tpu_compile.py [--topologies v5e:2x2 v5p:4x4x4 v6e:2x2]
        [--recipes paper mocov2] [--out benchmarks/out/tpu_compile.json]

Needs the tpu extra. A step compile takes minutes on a loaded 2-core host.
"""

from __future__ import annotations

import argparse
import collections
import datetime
import json
import pathlib
import re
import subprocess
import sys
import time

from img2imu_jax import tpu_host

tpu_host.keep_libtpu_out()

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from jax.sharding import Mesh, NamedSharding, PartitionSpec  # noqa: E402

from img2imu_jax import tpu_compile  # noqa: E402
from img2imu_jax.augment import make_augment  # noqa: E402
from img2imu_jax.config import RECIPES, load_config  # noqa: E402

# Recipe name → (bundled recipe, overrides); the batch is set per topology.
RECIPE_OVERRIDES = {
    "paper": ("img2imu_paper.py", []),
    "mocov2": ("img2imu_paper.py", ["augment.spec=mocov2"]),
    "jitter": ("img2imu_paper.py", ["augment.spec=jitter"]),
    "simclr_r50": ("simclr_r50_imagenet.py", []),
}
# Part of the program an instruction belongs to, by the first source file its frames name.
PART_BY_FILE = (("/augment/", "augmentation"), ("/models/", "encoder"), ("/losses.py", "loss"),
                ("/methods/", "method"), ("/shuffle_bn.py", "shuffle BN"), ("optax", "optimizer"),
                ("/optim.py", "optimizer"))


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--topologies", nargs="+", default=["v5e:2x2", "v5p:4x4x4", "v6e:2x2"])
    parser.add_argument("--recipes", nargs="+", default=["paper", "mocov2"],
                        choices=sorted(RECIPE_OVERRIDES))
    parser.add_argument("--images-per-chip", type=int, default=256,
                        help="per-chip batch of the step (global batch = this × chips)")
    parser.add_argument("--parts", nargs="+", default=["augment", "steps"],
                        choices=["augment", "steps"],
                        help="augment: each spec alone (seconds to a minute each); steps: the "
                        "whole step (minutes each)")
    parser.add_argument("--out", type=pathlib.Path,
                        default=pathlib.Path("benchmarks/out/tpu_compile.json"))
    parser.add_argument("--hlo-dir", type=pathlib.Path,
                        help="also write each step's compiled program (HLO text) here")
    return parser.parse_args(argv)


def stack_files(hlo_text: str) -> dict[int, list[str]]:
    """Stack frame id → the source files of that frame and its parents, innermost first."""
    section, files, locations, frames = None, {}, {}, {}
    for line in hlo_text.splitlines():
        if line in ("FileNames", "FunctionNames", "FileLocations", "StackFrames"):
            section = line
            continue
        if not line[:1].isdigit():
            section = None
            continue
        number, _, rest = line.partition(" ")
        if section == "FileNames":
            files[int(number)] = rest.strip('"')
        elif section == "FileLocations":
            locations[int(number)] = int(re.search(r"file_name_id=(\d+)", rest).group(1))
        elif section == "StackFrames":
            location = int(re.search(r"file_location_id=(\d+)", rest).group(1))
            parent = int(re.search(r"parent_frame_id=(\d+)", rest).group(1))
            frames[int(number)] = (location, parent - 1)  # printed one-based
    chains = {}
    for start in frames:
        chain, frame, seen = [], start, set()
        while frame in frames and frame not in seen:
            seen.add(frame)
            location, parent = frames[frame]
            chain.append(files.get(locations.get(location), ""))
            frame = parent
        chains[start] = chain
    return chains


def part_of(line: str, opcode: str, chains: dict[int, list[str]]) -> str:
    if opcode in tpu_compile.COLLECTIVE_OPCODES or "AsyncCollective" in line:
        return "collectives"
    frame = re.search(r"stack_frame_id=(\d+)", line)
    backward = "transpose(" in (re.search(r'op_name="([^"]*)"', line) or [None, ""])[1]
    for path in chains.get(int(frame.group(1)), []) if frame else []:
        for marker, part in PART_BY_FILE:
            if marker in path:
                return f"{part} backward" if part == "encoder" and backward else part
    return "rest"


def step_parts(hlo_text: str, clock_hz: float) -> dict[str, float]:
    """Estimated ms of the ENTRY instructions by part of the program."""
    chains = stack_files(hlo_text)
    cycles = collections.Counter()
    for _, opcode, line, in_entry in tpu_compile.instructions(hlo_text):
        estimate = tpu_compile.estimated_cycles(line)
        if in_entry and estimate is not None:
            cycles[part_of(line, opcode, chains)] += estimate
    return {part: 1e3 * count / clock_hz for part, count in cycles.most_common()}


def describe_top(hlo_text: str, top: list[dict]) -> list[dict]:
    """The top instructions with their result shape and source op, to say what limits each."""
    lines = {name: line for name, _, line, _ in tpu_compile.instructions(hlo_text)}
    chains = stack_files(hlo_text)
    described = []
    for item in top:
        line = lines.get(item["name"], "")
        shape = line.split("=", 1)[1].strip().split(" ")[0] if line else ""
        op_name = (re.search(r'op_name="([^"]*)"', line) or [None, ""])[1]
        described.append({**item, "shape": shape[:80], "op_name": op_name[-120:],
                          "part": part_of(line, item["opcode"], chains)})
    return described


def augment_cost(spec: str, topology: str, images_per_chip: int, shape: tuple[int, int]) -> dict:
    """One view of one chip's images (float32) through the spec, compiled for that chip."""
    chip = tpu_compile.chip_for(topology)
    device = tpu_compile.topology_devices(topology)[0]
    mesh = Mesh([device], ("data",))
    sharding = NamedSharding(mesh, PartitionSpec())
    images = jax.ShapeDtypeStruct((images_per_chip, *shape, 3), jnp.float32, sharding=sharding)
    key = jax.ShapeDtypeStruct((), jax.random.key(0).dtype, sharding=sharding)
    compiled = jax.jit(make_augment(spec)).lower(key, images).compile()
    cost = compiled.cost_analysis()
    program = tpu_compile.read_program(compiled.as_text())
    return {"spec": spec, "topology": topology, "images": images_per_chip,
            "gb": float(cost["bytes accessed"]) / 1e9, "gflop": float(cost["flops"]) / 1e9,
            "estimated_ms": 1e3 * program["estimated_cycles"] / chip.clock_hz,
            "uncosted": program["uncosted"]}


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    record = {"date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
              "commit": commit, "jax": jax.__version__, "augment": [], "steps": []}
    specs = sorted({load_config(RECIPES / RECIPE_OVERRIDES[r][0], RECIPE_OVERRIDES[r][1])
                    .augment.spec for r in args.recipes})
    for topology in args.topologies if "augment" in args.parts else []:
        for spec in specs:
            started = time.perf_counter()
            cost = augment_cost(spec, topology, args.images_per_chip, (96, 128))
            record["augment"].append(cost)
            print(f"augment {spec!r} on {topology}, one view of {args.images_per_chip}: "
                  f"{cost['gb']:.2f} GB, {cost['gflop']:.2f} GFLOP, "
                  f"{cost['estimated_ms']:.2f} ms estimated, uncosted {cost['uncosted']} "
                  f"({time.perf_counter() - started:.0f} s)", flush=True)
    for topology in args.topologies if "steps" in args.parts else []:
        for recipe in args.recipes:
            name, overrides = RECIPE_OVERRIDES[recipe]
            chips = len(tpu_compile.topology_devices(topology))
            config = load_config(RECIPES / name,
                                 [*overrides, f"batch_size={args.images_per_chip * chips}",
                                  f"moco.queue_size={max(4096, args.images_per_chip * chips)}"])
            step = tpu_compile.compiled_step(config, topology)
            text = step.compiled.as_text()
            if args.hlo_dir:
                args.hlo_dir.mkdir(parents=True, exist_ok=True)
                (args.hlo_dir / f"{recipe}_{topology}.hlo").write_text(text)
            report = tpu_compile.step_report(step, text)
            entry = {
                "recipe": recipe, "topology": topology, "chips": step.chips,
                "images_per_chip": step.examples_per_chip, "compile_s": step.compile_s,
                "gb_per_chip": report["gb_per_chip"], "gflop_per_chip": report["gflop_per_chip"],
                "estimated_ms": report["estimated_step_ms"],
                "flop_bound_ms": report["flop_bound_ms"],
                "hbm_gib": report["hbm_bytes"]["total"] / 2**30,
                "uncosted": report["uncosted"], "collectives": report["collectives"],
                "parts_ms": step_parts(text, step.chip.clock_hz),
                "top": describe_top(text, report["top_instructions"]),
            }
            record["steps"].append(entry)
            print(f"\n{recipe} on {topology} ({entry['images_per_chip']}/chip, compiled in "
                  f"{entry['compile_s']:.0f} s): {entry['gflop_per_chip']:.0f} GFLOP, "
                  f"{entry['gb_per_chip']:.1f} GB, {entry['estimated_ms']:.1f} ms estimated "
                  f"(FLOP bound {entry['flop_bound_ms']:.1f} ms), HBM {entry['hbm_gib']:.2f} GiB")
            print("  parts (estimated ms): " + ", ".join(
                f"{part} {ms:.2f}" for part, ms in entry["parts_ms"].items()))
            print(f"  uncosted: {entry['uncosted']}")
            for item in entry["top"]:
                print(f"  {item['estimated_cycles'] / step.chip.clock_hz * 1e3:6.2f} ms "
                      f"{item['opcode']:10s} {item['part']:16s} {item['shape']:40s} "
                      f"{item['op_name'][-60:]}", flush=True)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(record, indent=2) + "\n")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main(sys.argv[1:])
