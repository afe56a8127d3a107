"""Where training metrics go: CLU's logging and TensorBoard writers, `metrics.jsonl`, and
optionally Weights & Biases, behind one CLU `MetricWriter`.

`metrics.jsonl` stays one file any reader opens, locally and on `gs://`. A local file is
appended to, one line per log as it happens. Cloud Storage has no append, so there the object
is written whole, once every `REMOTE_BATCH_LINES` new lines and at every `flush()` (the trainer
flushes at each checkpoint): a crash loses at most the last `REMOTE_BATCH_LINES - 1` lines, and
none logged before the last checkpoint. Writing whole at every log, as before, was quadratic: a
100 000-step run at `log_every=50` wrote ~400 MB for its ~400 kB of lines.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

import jax
import ml_collections
from clu import metric_writers
from etils import epath

from img2imu_jax.paths import is_remote

log = logging.getLogger(__name__)

METRICS_FILE = "metrics.jsonl"
# On remote storage, lines per whole-object write between flushes (see the module docstring).
REMOTE_BATCH_LINES = 20


class _ScalarWriter(metric_writers.MetricWriter):
    """A writer of scalars only: the other kinds are TensorBoard's, and ignored here."""

    def write_summaries(self, step, values, metadata=None) -> None: ...
    def write_images(self, step, images) -> None: ...
    def write_videos(self, step, videos) -> None: ...
    def write_audios(self, step, audios, *, sample_rate) -> None: ...
    def write_texts(self, step, texts) -> None: ...
    def write_histograms(self, step, arrays, num_buckets=None) -> None: ...


class JsonLinesWriter(_ScalarWriter):
    """Scalars as one JSON object per line, `{"step": ..., name: value, ...}`.

    A resumed run keeps the lines of steps up to `resumed_step` and drops later ones, which
    belong to steps the run is about to repeat (the file is rewritten once for that).
    """

    def __init__(self, path: epath.PathLike, *, resumed_step: int = 0,
                 remote_batch: int = REMOTE_BATCH_LINES):
        self.path = epath.Path(path)
        self.remote, self.remote_batch = is_remote(self.path), remote_batch
        self.lines: list[str] = []  # remote: everything, to write whole; local: nothing
        self._unwritten = 0
        if self.path.exists():
            old = self.path.read_text().splitlines()
            kept = [line for line in old if line.strip()
                    and resumed_step and json.loads(line)["step"] <= resumed_step]
            if len(kept) != len(old):
                self.path.write_text("".join(line + "\n" for line in kept))
            if self.remote:
                self.lines = kept

    def write_scalars(self, step: int, scalars: Mapping[str, Any]) -> None:
        line = json.dumps({"step": int(step), **{k: float(v) for k, v in scalars.items()}})
        if not self.remote:
            with self.path.open("a") as file:
                file.write(line + "\n")
            return
        self.lines.append(line)
        self._unwritten += 1
        if self._unwritten >= self.remote_batch:
            self.flush()

    def flush(self) -> None:
        if self._unwritten:
            self.path.write_text("".join(line + "\n" for line in self.lines))
            self._unwritten = 0

    def close(self) -> None:
        self.flush()

    def write_hparams(self, hparams) -> None: ...


class WandbWriter(_ScalarWriter):
    """Scalars and hyper-parameters to a Weights & Biases run (the `wandb` extra)."""

    def __init__(self, run):
        self.run = run

    def write_scalars(self, step: int, scalars: Mapping[str, Any]) -> None:
        self.run.log({k: float(v) for k, v in scalars.items()}, step=int(step), commit=True)

    def write_hparams(self, hparams: Mapping[str, Any]) -> None:
        self.run.config.update(dict(hparams), allow_val_change=True)

    def flush(self) -> None: ...

    def close(self) -> None:
        self.run.finish()


def tensorboard_writer(logdir: epath.Path) -> metric_writers.MetricWriter:
    """TensorBoard event files in `logdir`, through TensorFlow's file system (local or gs://)."""
    return metric_writers.SummaryWriter(str(logdir))


def training_writer(workdir: epath.Path, config: ml_collections.ConfigDict, *,
                    resumed_step: int = 0) -> metric_writers.MetricWriter:
    """Process 0: log lines, TensorBoard, `metrics.jsonl` and, with `config.wandb.mode` set,
    Weights & Biases; the other processes only log. Writes happen in a background thread."""
    if jax.process_index() > 0:
        return metric_writers.AsyncMultiWriter([metric_writers.LoggingWriter()])
    writers = [metric_writers.LoggingWriter(), tensorboard_writer(workdir),
               JsonLinesWriter(workdir / METRICS_FILE, resumed_step=resumed_step)]
    if config.wandb.mode:
        writers.append(WandbWriter(_wandb_run(workdir, config)))
    return metric_writers.AsyncMultiWriter(writers)


def _wandb_run(workdir: epath.Path, config: ml_collections.ConfigDict):
    try:
        import wandb
    except ImportError:
        raise ValueError("config.wandb.mode is set but wandb is not installed; "
                         "pip install 'img2imu-jax[wandb]'") from None
    local = epath.Path(".") if is_remote(workdir) else workdir  # W&B writes local files
    return wandb.init(project=config.wandb.project, name=config.wandb.name or None,
                      mode=config.wandb.mode, dir=str(local), config=config.to_dict(),
                      id=config.wandb.name or None, resume="allow" if config.wandb.name else None)
