"""Timing helpers the benchmark scripts share: compile time from JAX's own events, and the
median of repeated calls."""

from __future__ import annotations

import collections
import contextlib
import statistics
import time
from collections.abc import Callable, Iterator
from typing import Any

import jax

COMPILE_EVENT_PREFIX = "/jax/core/compile/"


@contextlib.contextmanager
def compile_phases(fun_name: str | None = None) -> Iterator[dict[str, float]]:
    """Seconds JAX spends tracing, lowering and compiling `fun_name` (None: any function)
    inside the block, by phase.

    JAX's monitoring events time these phases exactly; "first call minus a steady call" does
    not, because the first run is itself slower (fresh output buffers). Eager work done while
    tracing (e.g. precomputed constants) is inside the trace phase, so nothing is counted twice.
    """
    phases: dict[str, float] = collections.defaultdict(float)
    names = None if fun_name is None else (fun_name, f"jit({fun_name})")

    def listener(event: str, seconds: float, **kwargs: Any) -> None:
        if event.startswith(COMPILE_EVENT_PREFIX) and (names is None
                                                       or kwargs.get("fun_name") in names):
            phases[event.removeprefix(COMPILE_EVENT_PREFIX)] += seconds

    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        yield phases
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)


def time_calls(fn: Callable[[], Any], repeats: int) -> dict[str, Any]:
    """Wall time of `repeats` calls of an already warmed-up `fn`; the median is the headline.

    The median resists one-off stalls from other processes on a shared machine better than the
    mean, and unlike the best it does not reward a lucky run; both are kept in the JSON.
    """
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return {"times_s": times, "best_s": min(times), "median_s": statistics.median(times)}
