"""`config.profile_steps = (start, count)`: a `jax.profiler` trace of steps start..start+count-1.

The trace goes to `WORKDIR/plugins/profile/<time>/`, where TensorBoard's profile plugin finds
it with `tensorboard --logdir WORKDIR` (install `tensorboard-plugin-profile`). Each process
traces its own host. For a `gs://` workdir the trace is written to a local temporary folder
and uploaded through `etils.epath` once it stops, so it does not depend on the profiler's own
file system supporting cloud storage.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import jax
from etils import epath

from img2imu_jax.paths import is_remote


class StepProfiler:
    """Starts a trace before step `start` runs and stops it once step `start + count - 1` is done."""

    def __init__(self, workdir: epath.Path, profile_steps: tuple[int, int]):
        self.start, count = (int(x) for x in profile_steps)
        self.stop = self.start + count - 1 if count > 0 else -1
        self.workdir = workdir
        self.local: str | None = None
        self.tracing = False

    def before(self, step: int) -> None:
        if step == self.start and self.stop >= self.start:
            self.local = tempfile.mkdtemp(prefix="img2imu-trace-") if is_remote(self.workdir) \
                else None
            jax.profiler.start_trace(self.local or str(self.workdir))
            self.tracing = True

    def after(self, step: int, outputs: Any) -> None:
        if self.tracing and step >= self.stop:
            self.close(outputs)

    def close(self, outputs: Any = None) -> None:
        """Ends the trace (if one runs) once `outputs` are computed, so it holds whole steps."""
        if not self.tracing:
            return
        jax.block_until_ready(outputs)
        jax.profiler.stop_trace()
        self.tracing = False
        if self.local is not None:
            for file in Path(self.local).rglob("*"):
                if file.is_file():
                    target = self.workdir / file.relative_to(self.local).as_posix()
                    target.parent.mkdir(parents=True, exist_ok=True)
                    epath.Path(file).copy(target, overwrite=True)
            shutil.rmtree(self.local)
            self.local = None
