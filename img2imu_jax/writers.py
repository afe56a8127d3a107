"""Where training metrics go: CLU's logging and TensorBoard writers, `metrics.jsonl`, and
optionally Weights & Biases, behind one CLU `MetricWriter`.

Cloud Storage has no append, so `metrics.jsonl` is not appended to: `JsonLinesWriter` keeps
every line in memory and writes the whole file again on each flush. One object rewritten
(rather than one object per flush) keeps the file a single `metrics.jsonl` that any reader
opens as before, locally and on `gs://`; at the default `log_every=50` a 100 000-step run has
2 000 lines (~400 kB), rewritten in the writer's background thread.
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


class _ScalarWriter(metric_writers.MetricWriter):
    """A writer of scalars only: the other kinds are TensorBoard's, and ignored here."""

    def write_summaries(self, step, values, metadata=None) -> None: ...
    def write_images(self, step, images) -> None: ...
    def write_videos(self, step, videos) -> None: ...
    def write_audios(self, step, audios, *, sample_rate) -> None: ...
    def write_texts(self, step, texts) -> None: ...
    def write_histograms(self, step, arrays, num_buckets=None) -> None: ...


class JsonLinesWriter(_ScalarWriter):
    """Scalars as one JSON object per line, `{"step": ..., name: value, ...}`, written whole.

    A resumed run keeps the lines of steps up to `resumed_step` and drops later ones, which
    belong to steps the run is about to repeat.
    """

    def __init__(self, path: epath.PathLike, *, resumed_step: int = 0):
        self.path = epath.Path(path)
        self.lines: list[str] = []
        if resumed_step and self.path.exists():
            self.lines = [line for line in self.path.read_text().splitlines()
                          if line.strip() and json.loads(line)["step"] <= resumed_step]
        self._dirty = False

    def write_scalars(self, step: int, scalars: Mapping[str, Any]) -> None:
        self.lines.append(json.dumps({"step": int(step),
                                      **{k: float(v) for k, v in scalars.items()}}))
        self._dirty = True
        self.flush()

    def flush(self) -> None:
        if self._dirty:
            self.path.write_text("".join(line + "\n" for line in self.lines))
            self._dirty = False

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
