"""What a run was: `run.json` in the workdir holds the resolved config, the library versions,
the project's commit and the device topology of every start, and guards resumption.

Resuming with a config that differs from the one the run started with would silently mix two
experiments in one checkpoint history, so it is an error naming the keys, unless the caller
allows it; then the change is logged and recorded in `run.json`. Keys that only change how a
run is observed (logging, profiling, the compilation cache, W&B) may always change.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import json
import logging
import subprocess
from pathlib import Path
from typing import Any

import jax
import ml_collections
from etils import epath
from jax.experimental import multihost_utils

log = logging.getLogger(__name__)

RUN_FILE = "run.json"
PACKAGES = ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "tensorflow-datasets",
            "img2imu-jax")
OBSERVATION_KEYS = ("log_every", "profile_steps", "compilation_cache_dir", "peer_timeout_s")
OBSERVATION_PREFIXES = ("wandb.", "evals.")  # evaluators read the state, never write it


def stamp(workdir: epath.Path, config: ml_collections.ConfigDict, *, resuming: bool,
          allow_config_change: bool = False) -> dict[str, Any]:
    """Checks `config` against the run's recorded one when `resuming`, then records this start.

    Call on every process: all of them read and compare (so all raise together), process 0
    writes.
    """
    path = workdir / RUN_FILE
    record = json.loads(path.read_text()) if path.exists() else {"starts": []}
    resolved = json.loads(config.to_json_best_effort())
    changed = config_diff(record["config"], resolved) if resuming and "config" in record else []
    if changed and not allow_config_change:
        raise ValueError(
            f"{workdir} was started with another config; differing keys: {', '.join(changed)} "
            f"(see {path}); pass --allow-config-change to resume anyway"
        )
    if changed:
        log.warning("resuming %s with a changed config: %s", workdir, ", ".join(
            f"{key} {_get(record['config'], key)!r} -> {_get(resolved, key)!r}" for key in changed))
    record["starts"].append({
        "time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "config_changes": changed, "versions": versions(), "commit": git_commit(),
        "devices": topology(),
    })
    record["config"] = resolved
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices("img2imu run.json read")
    if jax.process_index() == 0:
        path.write_text(json.dumps(record, indent=1) + "\n")
    return record


def config_diff(old: dict, new: dict) -> list[str]:
    """Dotted keys whose values differ (or exist on one side only), observation keys aside."""
    old_flat, new_flat = _flatten(old), _flatten(new)
    return sorted(key for key in old_flat.keys() | new_flat.keys()
                  if old_flat.get(key, "<absent>") != new_flat.get(key, "<absent>")
                  and key not in OBSERVATION_KEYS and not key.startswith(OBSERVATION_PREFIXES))


def versions() -> dict[str, str | None]:
    def version(name: str) -> str | None:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return None
    return {name: version(name) for name in PACKAGES}


def git_commit() -> str | None:
    """The checkout's commit (with `-dirty` for uncommitted changes), or None outside git."""
    here = Path(__file__).resolve().parent
    if not (here.parent / ".git").exists():  # an installed wheel, or a checkout of another repo
        return None
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True,
                                text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=here, capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("-dirty" if dirty.strip() else "")


def topology() -> dict[str, Any]:
    device = jax.devices()[0]
    return {"platform": device.platform, "device_kind": device.device_kind,
            "process_count": jax.process_count(), "device_count": jax.device_count(),
            "local_device_count": jax.local_device_count(),
            "local_device_ids": [d.id for d in jax.local_devices()]}


def _flatten(tree: dict, prefix: str = "") -> dict[str, Any]:
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _get(tree: dict, dotted: str) -> Any:
    return _flatten(tree).get(dotted, "<absent>")
