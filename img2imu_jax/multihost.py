"""One job on several processes, under faults: joining, a peer that dies, a preemption.

- `initialize` joins the job (`jax.distributed.initialize`) and starts a `PeerWatch`.
- `PeerWatch`: when any other process stops answering (killed, its host gone), this one logs
  one line naming it and the last finished checkpoint, and exits with status 1. JAX's
  coordination service notices a dead process by its missing heartbeats too, but ends the
  others with a native abort (exit 134, a C++ stack trace of ~40 frames), and jaxlib 0.10.2's
  hook for that moment, `missed_heartbeat_callback`, aborts with `std::bad_cast` when given a
  Python function (measured). So every process also beats through the service's key-value
  store and watches the others' beats, with JAX's heartbeat timeout set longer as a backstop.
  When process 0 dies, the service dies with it and JAX aborts the others at once (within
  2 s, measured); that native report is the one case this module cannot replace (benchmarks/
  RESULTS.md, "Several processes under faults", has what else was tried).
- `PreemptionWatch`: SIGTERM stops training at a step boundary; on several processes, at the
  same step on all of them, whichever processes got the signal.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Sequence

import jax
from etils import epath
from jax.experimental import multihost_utils

log = logging.getLogger(__name__)

HEARTBEATS = "img2imu/heartbeat/"
FINISHED = "finished"
# JAX's own heartbeat timeout, as a multiple of `peer_timeout_s`: long enough that the watch
# below speaks first, short enough to end the job if this process's watch itself is stuck.
JAX_HEARTBEAT_FACTOR = 2


def initialize(coordinator: str | None, *, num_processes: int | None, process_id: int | None,
               local_device_ids: Sequence[int] | None, peer_timeout_s: float,
               checkpoint_dir: epath.Path) -> PeerWatch:
    """`jax.distributed.initialize` (arguments left None are found by JAX: TPU VMs, SLURM),
    then a `PeerWatch` that ends this process once a peer is silent for `peer_timeout_s`."""
    if coordinator:
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
        coordinator, num_processes=num_processes, process_id=process_id,
        local_device_ids=local_device_ids,
        heartbeat_timeout_seconds=max(1, round(JAX_HEARTBEAT_FACTOR * peer_timeout_s)))
    from jax._src import distributed  # the client JAX connected; no public accessor exists

    return PeerWatch(distributed.global_state.client, peer_timeout_s, checkpoint_dir)


class PeerWatch:
    """A daemon thread: beats every `timeout_s / 10` s, and when another process's beat has not
    changed for `timeout_s` s, or the coordination service stops answering, logs one line and
    ends this process with status 1 (no traceback; `os._exit`, since a normal exit would wait
    for the dead process at JAX's shutdown barrier)."""

    def __init__(self, client, timeout_s: float, checkpoint_dir: epath.Path):
        if timeout_s <= 0:
            raise ValueError(f"peer_timeout_s must be > 0; got {timeout_s}")
        self.client, self.timeout_s, self.checkpoint_dir = client, timeout_s, checkpoint_dir
        self.me, self.count = jax.process_index(), jax.process_count()
        self._finished = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="img2imu-peer-watch",
                                        daemon=True)
        self._thread.start()

    def finish(self) -> None:
        """This process is done; the others stop expecting its beats."""
        self._finished.set()
        self._thread.join()
        self.client.key_value_set(HEARTBEATS + str(self.me), FINISHED, allow_overwrite=True)

    def await_verdict(self) -> None:
        """Gives the watch time to name a dead peer (a failed collective usually means one);
        returns if none is found."""
        self._finished.wait(self.timeout_s + 2 * self._interval)

    @property
    def _interval(self) -> float:
        return max(0.1, self.timeout_s / 10)

    def _watch(self) -> None:
        seen: dict[str, tuple[str | None, float]] = {}
        beat = 0
        while not self._finished.wait(self._interval):
            beat += 1
            try:
                self.client.key_value_set(HEARTBEATS + str(self.me), str(beat),
                                          allow_overwrite=True)
                beats = dict(self.client.key_value_dir_get(HEARTBEATS))
            except Exception:  # the service lives in process 0
                self._end("process 0 (it hosts JAX's coordination service) stopped answering")
            now = time.monotonic()
            for process in range(self.count):
                if process == self.me:
                    continue
                value = beats.get(HEARTBEATS + str(process))
                last, since = seen.setdefault(process, (value, now))
                if value != last or value == FINISHED:
                    seen[process] = (value, now)
                elif now - since > self.timeout_s:
                    self._end(f"process {process} stopped answering (no heartbeat for "
                              f"{now - since:.0f} s)")

    def _end(self, why: str) -> None:
        from img2imu_jax.checkpoint import finished_steps

        try:
            steps = finished_steps(self.checkpoint_dir)
            last = f"the last checkpoint is step {steps[-1]}" if steps else "no checkpoint yet"
        except Exception as error:  # the one line must come out whatever the storage does
            last = f"checkpoints unreadable ({type(error).__name__})"
        log.error("%s; process %d stops, %s. Relaunch every process with the same command to "
                  "resume.", why, self.me, last)  # a StreamHandler flushes every record
        os._exit(1)


class PreemptionWatch:
    """SIGTERM → stop at the next step boundary, the same step on every process.

    One process: a Python SIGTERM handler sets a flag. Several: `jax.distributed.initialize`
    made a preemption sync manager whose own SIGTERM handler tells the coordination service,
    and every process then stops at the step after the furthest one's; a Python handler
    installed later would take SIGTERM away from it, so none is. Its counter is the steps run
    since `start`, not the step: a notice that arrives before the first step would otherwise
    set the sync point at step 1, which a resumed run never reaches.
    """

    def __init__(self, start: int):
        self.start = start
        self.flag = threading.Event()
        self.previous = None
        if jax.process_count() == 1:
            self.previous = signal.signal(signal.SIGTERM, lambda *_: self.flag.set())

    def requested(self, step: int) -> bool:
        if jax.process_count() > 1:
            return multihost_utils.reached_preemption_sync_point(step - self.start)
        return self.flag.is_set()

    def restore(self) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGTERM, self.previous)
