"""The Markdown block benchmarks/device.sh leaves for RESULTS.md, from the JSON of each part."""

from __future__ import annotations

import json
import pathlib
import sys


def _numbers(tree, prefix: str = "") -> list[tuple[str, float]]:
    """Every numeric leaf of a JSON tree as (dotted path, value)."""
    if isinstance(tree, dict):
        return [item for key, value in tree.items() for item in _numbers(value, f"{prefix}{key}.")]
    if isinstance(tree, (int, float)) and not isinstance(tree, bool):
        return [(prefix[:-1], float(tree))]
    return []


def summary(out: pathlib.Path) -> str:
    lines = ["### benchmarks/device.sh", ""]
    step_path = out / "train_step.json"
    if step_path.exists():
        step = json.loads(step_path.read_text())
        lines += [f"Device: {step['device_kind']} ({step['backend']}), jax {step['jax']}.", "",
                  "| recipe | feed | images/s/device | MFU (bf16 peak) | p50 ms | p99 ms | "
                  "dispatch ms |", "|---|---|---:|---:|---:|---:|---:|"]
        for name, result in step["results"].items():
            for feed in ("device_resident", "input_pipeline"):
                r = result[feed]
                mfu = f"{100 * r['mfu_bf16_peak']:.1f} %" if r["mfu_bf16_peak"] else "n/a"
                lines.append(f"| {name} ({result['dtype']}, batch {result['batch']}) | {feed} | "
                             f"{r['images_per_s_per_device']:,.0f} | {mfu} | "
                             f"{1e3 * r['p50_s']:.1f} | {1e3 * r['p99_s']:.1f} | "
                             f"{1e3 * r['dispatch_s_per_step']:.2f} |")
        lines.append("")
    peer_path = out / "peer_torch.json"
    if peer_path.exists():
        lines += ["| PyTorch peer | images/s | ours/peer |", "|---|---:|---:|"]
        for name, r in json.loads(peer_path.read_text())["results"].items():
            ratio = f"{r['ours_over_peer']:.2f}" if "ours_over_peer" in r else ""
            lines.append(f"| {name} | {r['images_per_s']:,.1f} | {ratio} |")
        lines.append("")
    for name in ("spectrogram", "finetune", "input_pipeline"):
        path = out / f"{name}.json"
        if path.exists():
            numbers = [(k, v) for k, v in _numbers(json.loads(path.read_text()))
                       if not k.startswith(("args.", "device."))]
            lines.append(f"- {name}: " + ", ".join(f"{k} {v:.4g}" for k, v in numbers[:12]))
        else:
            lines.append(f"- {name}: no result (see {name}.log)")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(summary(pathlib.Path(sys.argv[1])), end="")
