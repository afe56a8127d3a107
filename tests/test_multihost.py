"""The peer watch against a stand-in for JAX's coordination service: which silence ends the
job, with which line. (Real processes, loopback: tests/test_trainer_runs.py.)"""

from __future__ import annotations

import logging
import os
import re
import threading
import time

import jax
import pytest
from etils import epath

from img2imu_jax import multihost


class Service:
    """The two key-value calls the watch makes, in memory; `down` makes them fail as RPCs do."""

    def __init__(self):
        self.store: dict[str, str] = {}
        self.down = False

    def key_value_set(self, key: str, value: str, allow_overwrite: bool = False) -> None:
        if self.down:
            raise RuntimeError("UNAVAILABLE: failed to connect to all addresses")
        assert allow_overwrite or key not in self.store
        self.store[key] = value

    def key_value_dir_get(self, prefix: str) -> list[tuple[str, str]]:
        if self.down:
            raise RuntimeError("UNAVAILABLE: failed to connect to all addresses")
        return [(k, v) for k, v in self.store.items() if k.startswith(prefix)]


@pytest.fixture
def ended(monkeypatch):
    """Runs the watch as process 0 of 3; `os._exit` ends only the watch's thread."""
    codes: list[int] = []

    def exit_thread(code: int) -> None:
        codes.append(code)
        raise SystemExit(code)

    monkeypatch.setattr(os, "_exit", exit_thread)
    monkeypatch.setattr(threading, "excepthook", lambda args: None)  # as Python's own: silent
    monkeypatch.setattr(jax, "process_index", lambda: 0)
    monkeypatch.setattr(jax, "process_count", lambda: 3)
    return codes


def beat(service: Service, process: int, stop: threading.Event) -> None:
    n = 0
    while not stop.wait(0.02):
        n += 1
        service.key_value_set(f"{multihost.HEARTBEATS}{process}", str(n), allow_overwrite=True)


def test_a_silent_peer_ends_the_process_with_one_line_and_a_finished_one_does_not(
        ended, tmp_path, caplog):
    service = Service()
    stop_1, stop_2 = threading.Event(), threading.Event()
    beaters = [threading.Thread(target=beat, args=(service, p, s)) for p, s in
               ((1, stop_1), (2, stop_2))]
    for thread in beaters:
        thread.start()
    checkpoints = epath.Path(tmp_path) / "checkpoints"
    (checkpoints / "4").mkdir(parents=True)
    (checkpoints / "6.orbax-checkpoint-tmp-123").mkdir()  # an unfinished save is not the last
    with caplog.at_level(logging.ERROR, logger="img2imu_jax.multihost"):
        watch = multihost.PeerWatch(service, 0.3, checkpoints)
        stop_2.set()  # process 2 finishes cleanly...
        beaters[1].join()
        service.key_value_set(f"{multihost.HEARTBEATS}2", multihost.FINISHED,
                              allow_overwrite=True)
        time.sleep(1.0)
        assert ended == []  # ...and is never taken for dead, nor is process 1 while it beats
        stop_1.set()
        started = time.monotonic()
        watch._thread.join(timeout=5)
    assert ended == [1]
    assert 0.3 <= time.monotonic() - started < 5
    (line,) = [r.getMessage() for r in caplog.records]
    assert re.fullmatch(r"process 1 stopped answering \(no heartbeat for \d+ s\); process 0 "
                        r"stops, the last checkpoint is step 4\. Relaunch every process with "
                        r"the same command to resume\.", line), line


def test_a_lost_coordination_service_names_process_0(ended, monkeypatch, tmp_path, caplog):
    monkeypatch.setattr(jax, "process_index", lambda: 1)
    service = Service()
    with caplog.at_level(logging.ERROR, logger="img2imu_jax.multihost"):
        watch = multihost.PeerWatch(service, 0.3, epath.Path(tmp_path) / "checkpoints")
        service.down = True
        watch._thread.join(timeout=5)
    assert ended == [1]
    (line,) = [r.getMessage() for r in caplog.records]
    assert line.startswith("process 0 (it hosts JAX's coordination service) stopped answering; "
                           "process 1 stops, no checkpoint yet.")
