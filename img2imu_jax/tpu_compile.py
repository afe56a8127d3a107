"""`img2imu compile`: the pre-training step compiled for any TPU slice on this host, nothing run.

With libtpu installed (the `tpu` extra), XLA's TPU compiler runs on a CPU host for any topology,
multi-host and multislice included. The program is the trainer's own: `pretrain.setup` on a
`parallel.data_mesh` of the topology's abstract devices, its state abstract (shapes and
shardings), so a recipe's fit and cost are known before anyone pays for the slice.

How the figures are read (all per chip, and all the compiler's estimates, never timings):
- HBM = arguments + outputs + temporaries − aliased (`memory_analysis`), against the chip's
  capacity; a program that does not fit fails to compile with RESOURCE_EXHAUSTED.
- FLOPs and bytes accessed (`cost_analysis`) are bounds, not times.
- Step time: the sum of `estimated_cycles` over the ENTRY computation's instructions at the
  chip's clock. `cost_analysis()["optimal_seconds"]` is not used: every async slice group
  adds a −1 s sentinel to it. Instructions without an estimate (gathers, sorts, async
  collectives, loops) are counted by kind beside the sum; a loop body counts once.
- Across slices the compiler lowers each collective's data-centre-network leg to send/recv
  pairs tagged with the transfer's kind; their kinds and the bytes each chip sends are read
  from the sends (a loop body's once).
- "Examples" are what the method reads: images, or the 1D methods' sensor windows.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import math
import re
import time
from collections.abc import Iterator
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.experimental import topologies
from jax.sharding import NamedSharding, PartitionSpec

from img2imu_jax import parallel, pretrain, tpu_host
from img2imu_jax.methods import method_class

GIB = 1024**3


@dataclasses.dataclass(frozen=True)
class Chip:
    """Vendor data-sheet figures for one TPU generation.

    `clock_hz` is the clock at which its matrix units give `peak_flops` (v5e: 4 MXUs × 128² MACs
    × 2 FLOPs × 1.5 GHz = 197 TFLOP/s); at it, a 4096³ bf16 matmul's estimated cycles come to
    within 4 % (v5e, v5p) and 15 % (v6e) of its FLOP-bound time (benchmarks/RESULTS.md).
    """

    device_kind: str
    peak_flops: float  # bf16 FLOP/s
    hbm_bandwidth: float  # bytes/s
    hbm_bytes: float
    clock_hz: float


CHIPS = {
    "v5e": Chip("TPU v5 lite", 197e12, 819e9, 16 * GIB, 1.5e9),
    "v5p": Chip("TPU v5", 459e12, 2.765e12, 95 * GIB, 1.75e9),
    "v6e": Chip("TPU v6 lite", 918e12, 1.64e12, 32 * GIB, 1.75e9),
}
# ENTRY instructions that move no data and cost nothing, so carry no estimate by nature.
FREE_OPCODES = {"parameter", "constant", "get-tuple-element", "tuple", "bitcast"}
# Cross-chip transfers, each counted once (an async pair by its start); across slices the
# compiler lowers collectives to send/recv pairs over the data-centre network.
COLLECTIVE_OPCODES = {"all-reduce", "all-reduce-start", "all-gather", "all-gather-start",
                      "reduce-scatter", "collective-permute", "collective-permute-start",
                      "all-to-all", "ragged-all-to-all", "send", "recv"}


class DoesNotFit(RuntimeError):
    """The step needs more HBM per chip than the chip has."""


# The TPU compiler's words when a program does not fit: "the total memory required for HLO
# temporaries (22.51G) exceeds available HBM (15.75G)" (G: GiB, as 16 GiB less its reserve).
_EXCEEDS = re.compile(r"required for (.+?) \(([\d.]+)G\) exceeds available HBM \(([\d.]+)G\)")


def compiler_sizes(error_text: str) -> str:
    """What a RESOURCE_EXHAUSTED compile error says was needed and was available."""
    sizes = _EXCEEDS.search(error_text)
    if sizes:
        what, needed, available = sizes.groups()
        return f"needs {needed} GiB of HBM per chip for {what}, {available} GiB available"
    return next((line for line in error_text.splitlines() if "exceeds" in line),
                error_text.strip().splitlines()[0]).strip()


def does_not_fit(detail: str, topology: str, chip: Chip, config: ml_collections.ConfigDict,
                 examples_per_chip: int) -> DoesNotFit:
    """One line: the sizes (`detail`) and the config's lever to lower them."""
    method = method_class(config.method)
    lever = (f"to lower it, --config.grad_chunks=K runs the encoder in K chunks (about 1/K "
             f"of its activations; K divides the {examples_per_chip} {method.input} per chip, "
             f"now {config.grad_chunks}) or a smaller --config.batch_size"
             if method.supports_grad_chunks else
             f"to lower it, a smaller --config.batch_size (method {config.method} has no "
             "grad_chunks)")
    return DoesNotFit(f"does not fit on {topology} ({chip.device_kind}, {chip.hbm_bytes / GIB:g}"
                      f" GiB): {detail}; {lever}")


def chip_for(topology: str) -> Chip:
    """The chip a topology name ("v5e:2x2") names; an unknown one is a one-line error."""
    name, _, shape = topology.partition(":")
    if name not in CHIPS or not re.fullmatch(r"\d+(x\d+)*", shape):
        raise ValueError(
            f"unknown TPU topology {topology!r}: give CHIP:SHAPE with CHIP one of "
            f"{', '.join(CHIPS)} (e.g. v5e:2x2, v5p:4x4x4, v6e:4x4)")
    return CHIPS[name]


def topology_devices(topology: str, slices: int = 1) -> list[Any]:
    """The abstract devices of `slices` slices of `topology`, compiled for, never run on."""
    chip_for(topology)
    tpu_host.prepare_libtpu_for_compiling()
    try:
        return list(topologies.get_topology_desc(
            platform="tpu", topology_name=topology, num_slices=slices).devices)
    except Exception as error:  # libtpu's errors are RuntimeErrors of its own kind
        message = str(error).strip().splitlines()[0]
        raise ValueError(f"TPU topology {topology!r} x {slices} slice(s): {message}") from None


@dataclasses.dataclass
class CompiledStep:
    """The compiled step and what its report is read against."""

    compiled: Any
    chip: Chip
    topology: str
    slices: int
    chips: int
    hosts: int
    input: str  # what an example is: "images" or "windows"
    example_shape: tuple[int, ...]
    examples_per_chip: int
    state_bytes: int
    compile_s: float
    config: ml_collections.ConfigDict


def compiled_step(config: ml_collections.ConfigDict, topology: str, *,
                  slices: int = 1) -> CompiledStep:
    """`config`'s pre-training step compiled for the topology, exactly as the trainer sets it up."""
    chip = chip_for(topology)
    if config.model.dtype == "auto":  # what 'auto' is on a TPU; this host's backend is not one
        config = config.copy_and_resolve_references()
        config.model.dtype = "bfloat16"
    devices = topology_devices(topology, slices)
    mesh = parallel.data_mesh(devices)
    if config.batch_size % mesh.size:
        raise ValueError(f"batch_size {config.batch_size} does not split over {mesh.size} chips")
    # The schedule's lengths are constants in the program (no shape or cost depends on them):
    # one step per epoch stands in for the dataset's length.
    # The 1D methods read normalised float32 windows and keep the corpus's per-axis statistics
    # in the state; their values never shape the program.
    examples = method_class(config.method).input
    windows = examples == "windows"
    run = pretrain.setup(config, mesh, steps_per_epoch=1,
                         total_steps=config.total_steps or math.ceil(config.epochs),
                         input_stats={"input_mean": np.zeros(3, np.float32),
                                      "input_std": np.ones(3, np.float32)} if windows else None,
                         abstract=True)
    shape, dtype = (((round(config.data.seconds * config.data.sample_rate), 3), jnp.float32)
                    if windows else ((*config.data.image_size, 3), jnp.uint8))
    batch = jax.ShapeDtypeStruct(
        (config.batch_size, *shape), dtype,
        sharding=NamedSharding(mesh, PartitionSpec(parallel.DATA_AXIS)))
    started = time.perf_counter()
    try:
        compiled = run.step_fn.lower(run.state, batch).compile()
    except Exception as error:
        if "RESOURCE_EXHAUSTED" not in str(error):
            raise
        raise does_not_fit(compiler_sizes(str(error)), topology, chip, config,
                           config.batch_size // mesh.size) from None
    return CompiledStep(
        compiled=compiled, chip=chip, topology=topology, slices=slices, chips=mesh.size,
        hosts=len({(getattr(d, "slice_index", 0), d.process_index) for d in devices}),
        input=examples, example_shape=shape, examples_per_chip=config.batch_size // mesh.size,
        state_bytes=sum(int(np.prod(leaf.shape)) * np.dtype(leaf.dtype).itemsize
                        for leaf in jax.tree.leaves(run.state)),
        compile_s=time.perf_counter() - started, config=config)


def compile_step(config: ml_collections.ConfigDict, topology: str, *,
                 slices: int = 1) -> dict[str, Any]:
    """Compiles `config`'s pre-training step for the topology; returns the report (see module)."""
    step = compiled_step(config, topology, slices=slices)
    return step_report(step, step.compiled.as_text())


def step_report(step: CompiledStep, hlo_text: str) -> dict[str, Any]:
    """The report (see module) of a compiled step whose program text is `hlo_text`."""
    chip, per_chip, config = step.chip, step.examples_per_chip, step.config
    memory = step.compiled.memory_analysis()
    hbm = {
        "arguments": memory.argument_size_in_bytes,
        "outputs": memory.output_size_in_bytes,
        "temporaries": memory.temp_size_in_bytes,
        "aliased": memory.alias_size_in_bytes,
    }
    hbm["total"] = hbm["arguments"] + hbm["outputs"] + hbm["temporaries"] - hbm["aliased"]
    cost = step.compiled.cost_analysis()
    program = read_program(hlo_text)
    step_s = program["estimated_cycles"] / chip.clock_hz
    flops, accessed = float(cost["flops"]), float(cost["bytes accessed"])
    return {
        "topology": step.topology,
        "slices": step.slices,
        "chips": step.chips,
        "hosts": step.hosts,
        "device_kind": chip.device_kind,
        "recipe": {"method": config.method, "augment": config.augment.spec,
                   "batch_size": config.batch_size, "example_shape": list(step.example_shape),
                   "dtype": config.model.dtype, "grad_chunks": config.grad_chunks},
        "input": step.input,
        "examples_per_chip": per_chip,
        "compile_s": step.compile_s,
        "hbm_bytes": hbm,
        "hbm_capacity_bytes": chip.hbm_bytes,
        "fits": hbm["total"] <= chip.hbm_bytes,
        "state_bytes": step.state_bytes,
        "gflop_per_chip": flops / 1e9,
        "gb_per_chip": accessed / 1e9,
        "gflop_per_example": flops / 1e9 / per_chip,
        "gb_per_example": accessed / 1e9 / per_chip,
        "estimated_cycles": program["estimated_cycles"],
        "estimated_step_ms": 1e3 * step_s,
        "examples_per_s_per_chip": per_chip / step_s if step_s else None,
        "flop_bound_ms": 1e3 * flops / chip.peak_flops,
        "memory_bound_ms": 1e3 * accessed / chip.hbm_bandwidth,
        "mfu_ceiling": flops / chip.peak_flops / step_s if step_s else None,
        "uncosted": program["uncosted"],
        "collectives": program["collectives"],
        "across_slices": program["across_slices"],
        "bytes_across_slices_per_chip": program["bytes_across_slices"],
        "top_instructions": program["top"],
    }


_INSTRUCTION = re.compile(r"^\s*(?:ROOT\s+)?%?([\w.\-]+)\s*=\s*(.*)$")


def _opcode(rest: str) -> str:
    """The opcode after an instruction's result shape (which may be a parenthesised tuple)."""
    if rest.startswith("("):
        depth = 0
        for end, char in enumerate(rest):
            depth += {"(": 1, ")": -1}.get(char, 0)
            if depth == 0:
                break
        rest = rest[end + 1:]
    else:
        rest = rest.split(" ", 1)[1] if " " in rest else ""
    match = re.match(r"\s*([\w\-]+)\(", rest)
    return match.group(1) if match else "?"


def instructions(hlo_text: str) -> Iterator[tuple[str, str, str, bool]]:
    """`(name, opcode, line, in ENTRY)` for every instruction of an HLO module's text."""
    in_entry = False
    for line in hlo_text.splitlines():
        if line.startswith("ENTRY "):
            in_entry = True
            continue
        if in_entry and line.startswith("}"):
            in_entry = False
        match = _INSTRUCTION.match(line)
        if match:
            yield match.group(1), _opcode(match.group(2)), line, in_entry


def estimated_cycles(line: str) -> int | None:
    """An instruction's `estimated_cycles` (its backend config), or None where it has none."""
    estimate = re.search(r'"estimated_cycles":"(\d+)"', line)
    return int(estimate.group(1)) if estimate else None


def sent_bytes(line: str) -> int:
    """The bytes a send instruction sends: its result tuple's first element (the data)."""
    dtype, dims = re.search(r"=\s*\(\s*(\w+)\[([\d,]*)\]", line).groups()
    bits = re.match(r"[a-z]+?(\d+)", dtype)  # f32, bf16, s8, f8e4m3fn; pred is a byte
    elements = math.prod(int(d) for d in dims.split(",") if d)
    return elements * (int(bits.group(1)) if bits else 8) // 8


def read_program(hlo_text: str) -> dict[str, Any]:
    """Σ estimated_cycles of the ENTRY instructions, the uncosted ones by opcode, the distinct
    collectives in the whole module by opcode, the transfers across slices by kind and the
    bytes they send, and the ten costliest ENTRY instructions."""
    cycles, uncosted, costed = 0, collections.Counter(), []
    collectives = collections.defaultdict(set)
    across_slices, bytes_across_slices = collections.Counter(), 0
    for name, opcode, line, in_entry in instructions(hlo_text):
        if opcode in COLLECTIVE_OPCODES:
            # The TPU compiler splits a large asynchronous collective over many fused
            # computations, each holding a copy of it under one chain id or async name.
            shared = re.search(r'(?:chain_id|async_collective_name)="([^"]+)"', line)
            collectives[opcode].add(shared.group(0) if shared else name)
        transfer = re.search(r'_xla_megascale_transfer_type="(\w+)"', line)
        if opcode == "send" and transfer:
            across_slices[transfer.group(1).lower().replace("_", "-")] += 1
            bytes_across_slices += sent_bytes(line)
        if not in_entry:
            continue
        estimate = estimated_cycles(line)
        if estimate is not None:
            cycles += estimate
            costed.append((estimate, name, opcode))
        elif opcode not in FREE_OPCODES:
            uncosted[opcode] += 1
    top = [{"name": name, "opcode": opcode, "estimated_cycles": count}
           for count, name, opcode in sorted(costed, reverse=True)[:10]]
    return {"estimated_cycles": cycles, "uncosted": dict(uncosted.most_common()),
            "collectives": dict(collections.Counter(
                {opcode: len(names) for opcode, names in collectives.items()}).most_common()),
            "across_slices": dict(across_slices.most_common()),
            "bytes_across_slices": bytes_across_slices, "top": top}


def format_report(report: dict[str, Any]) -> str:
    """The report as the lines `img2imu compile` prints."""
    hbm = report["hbm_bytes"]
    slices = f" x {report['slices']} slices" if report["slices"] > 1 else ""
    examples, example = report["input"], report["input"].removesuffix("s")
    lines = [
        f"{report['topology']}{slices}: {report['chips']} chips ({report['device_kind']}) over "
        f"{report['hosts']} host(s), {report['examples_per_chip']} {examples} per chip "
        f"(compiled in {report['compile_s']:.1f} s)",
        f"HBM per chip: {hbm['total'] / GIB:.2f} GiB of {report['hbm_capacity_bytes'] / GIB:g} "
        f"GiB — {'fits' if report['fits'] else 'DOES NOT FIT'} (arguments "
        f"{hbm['arguments'] / GIB:.2f}, outputs {hbm['outputs'] / GIB:.2f}, temporaries "
        f"{hbm['temporaries'] / GIB:.2f}, aliased {hbm['aliased'] / GIB:.2f}; state "
        f"{report['state_bytes'] / GIB:.3f} GiB)",
        f"per {example}: {report['gflop_per_example']:.2f} GFLOP, "
        f"{report['gb_per_example']:.3f} GB "
        f"accessed (per chip and step: {report['gflop_per_chip']:.1f} GFLOP, "
        f"{report['gb_per_chip']:.2f} GB)",
        f"estimated step: {report['estimated_step_ms']:.2f} ms (Σ estimated cycles), "
        f"{report['examples_per_s_per_chip']:,.0f} {examples}/s per chip; FLOP bound "
        f"{report['flop_bound_ms']:.2f} ms, so MFU at most {report['mfu_ceiling']:.0%}",
        "instructions without an estimate: " + (", ".join(
            f"{count} {opcode}" for opcode, count in report["uncosted"].items()) or "none"),
        "collectives per step: " + (", ".join(
            f"{count} {opcode}" for opcode, count in report["collectives"].items()) or "none"),
    ]
    if report["slices"] > 1:
        lines.append("across slices (data-centre network): " + (", ".join(
            f"{count} {kind}" for kind, count in report["across_slices"].items()) or "nothing")
            + f", {report['bytes_across_slices_per_chip'] / 1e6:.3f} MB sent per chip per step")
    return "\n".join(lines)


def run(config: ml_collections.ConfigDict, topology: str, *, slices: int = 1,
        json_path: Any = None) -> dict[str, Any]:
    """`img2imu compile`: compile, print the report, write it as JSON; raise if it does not fit."""
    report = compile_step(config, topology, slices=slices)
    print(format_report(report))
    if json_path is not None:
        json_path.write_text(json.dumps(report, indent=2) + "\n")
    if not report["fits"]:
        raise does_not_fit(f"needs {report['hbm_bytes']['total'] / GIB:.2f} GiB of HBM per chip",
                           topology, chip_for(topology), config, report["examples_per_chip"])
    return report
