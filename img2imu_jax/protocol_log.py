"""Progress of the downstream protocol: a line with an ETA per finished (encoder, mode, fold,
shot count) over the whole protocol, and TensorBoard scalars per fold and shot count."""

from __future__ import annotations

import logging
import time

from etils import epath

log = logging.getLogger(__name__)


class ProtocolProgress:
    """Counts finished evaluations out of `total`; scalars go to `workdir`'s TensorBoard events
    as `<encoder>/<mode>/<n>-shot/{test,validation}_f1`, one point per fold (the step). A core
    install (no `pretrain` extra: no CLU or TensorFlow) prints the progress without scalars."""

    def __init__(self, total: int, workdir: epath.Path):
        self.total, self.done = total, 0
        self.started = time.monotonic()
        try:
            from img2imu_jax.writers import tensorboard_writer
        except ModuleNotFoundError as error:
            log.info("no TensorBoard scalars for the protocol (%s; the pretrain extra has it)",
                     error.name)
            self.writer = None
        else:
            self.writer = tensorboard_writer(workdir)

    def __call__(self, encoder: str, mode: str, fold: int, shots: int, test_f1: float,
                 validation_f1: float) -> None:
        self.done += 1
        prefix = f"{encoder.replace(' ', '_')}/{mode}/{shots}-shot"
        if self.writer is not None:
            self.writer.write_scalars(fold, {f"{prefix}/test_f1": test_f1,
                                             f"{prefix}/validation_f1": validation_f1})
        left = int((time.monotonic() - self.started) / self.done * (self.total - self.done))
        print(f"finetune {self.done}/{self.total}: {encoder}, {mode}, fold {fold}, "
              f"{shots}-shot: test macro-F1 {test_f1:.3f} (validation {validation_f1:.3f}), "
              f"ETA {left // 3600}:{left // 60 % 60:02d}:{left % 60:02d}", flush=True)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
