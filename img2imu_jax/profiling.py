"""`config.profile_steps = (start, count)`: a `jax.profiler` trace of steps start..start+count-1.

The trace goes to `WORKDIR/plugins/profile/<time>/`, where TensorBoard's profile plugin finds
it with `tensorboard --logdir WORKDIR` (install `tensorboard-plugin-profile`). Each process
traces its own host.
"""

from __future__ import annotations

from typing import Any

import jax
from etils import epath


class StepProfiler:
    """Starts a trace before step `start` runs and stops it once step `start + count - 1` is done."""

    def __init__(self, workdir: epath.Path, profile_steps: tuple[int, int]):
        self.start, count = (int(x) for x in profile_steps)
        self.stop = self.start + count - 1 if count > 0 else -1
        self.workdir = workdir
        self.tracing = False

    def before(self, step: int) -> None:
        if step == self.start and self.stop >= self.start:
            jax.profiler.start_trace(str(self.workdir))
            self.tracing = True

    def after(self, step: int, outputs: Any) -> None:
        if self.tracing and step >= self.stop:
            self.close(outputs)

    def close(self, outputs: Any = None) -> None:
        """Ends the trace (if one runs) once `outputs` are computed, so it holds whole steps."""
        if self.tracing:
            jax.block_until_ready(outputs)
            jax.profiler.stop_trace()
            self.tracing = False
