"""JAX's persistent compilation cache, on by default, so a restarted run skips recompiling.

`JAX_COMPILATION_CACHE_DIR` in the environment wins over the config; `''` turns it off. Entries
of any size whose compile took at least 0.5 s are kept: the training step and the fine-tune
heads, not every small op (measured second start: see benchmarks/RESULTS.md, "Compilation cache").

Off for several processes on CPU: only process 0 writes entries and the keys differ per process,
so on a relaunch process 0 loaded the step in seconds while process 1 compiled it for a minute,
and gloo gives up on a peer that has not joined a collective within 30 s (measured: every
relaunch of a 2-process loopback run failed that way).
"""

from __future__ import annotations

import logging
import os

import jax

DEFAULT_DIR = "~/.cache/img2imu/jax"

log = logging.getLogger(__name__)


def enable(directory: str = DEFAULT_DIR) -> str | None:
    """Points JAX's compilation cache at `directory` (local or gs://); returns where, or None."""
    directory = os.environ.get("JAX_COMPILATION_CACHE_DIR", directory)
    if not directory:
        return None
    if jax.distributed.is_initialized() and jax.default_backend() == "cpu":
        jax.config.update("jax_enable_compilation_cache", False)  # JAX reads the env var too
        log.info("JAX compilation cache: off (several processes on CPU)")
        return None
    if "://" not in directory:
        directory = os.path.abspath(os.path.expanduser(directory))
    jax.config.update("jax_compilation_cache_dir", directory)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    log.info("JAX compilation cache: %s", directory)
    return directory
