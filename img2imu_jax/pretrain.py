"""Contrastive pre-training, readable top to bottom: the same code from one CPU to a TPU pod.

The step is written as the per-device program — augment this device's images, encode both
views, a loss whose negatives come from every device, gradients and BatchNorm statistics
averaged over the `'data'` axis — and mapped over every device of every process with
`jax.shard_map` under `jax.jit`, donating the state. The method (`img2imu_jax.methods`: `moco`,
the paper's; `simclr`; `simsiam`; the 1D sensor baselines `simclr_1d`, `multitask_1d`,
`cpc_1d`) supplies the loss and its extra state; `setup()` builds the state and step once for
the trainer, the tests and the benchmarks. The 1D methods take a sensor corpus's normalised
windows (`imu.window_batches`) where the others take photos, and make their own views.

The state is one pytree with the checkpoint's names: `model` (`encoder`, `head`, and SimSiam's
`predictor`), `opt_state` and `train` (step, root key, the 1D methods' corpus normalisation
`input_mean` and `input_std`, and the method's extra state: for MoCo the key encoder and the
queue). With the input
position beside it in the checkpoint, a restarted run continues exactly where it stopped.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import math
import os
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from etils import epath
from flax import nnx
from jax.experimental import multihost_utils
from jax.sharding import NamedSharding, PartitionSpec

from img2imu_jax import compile_cache, optim, run_info
from img2imu_jax.augment import make_augment
from img2imu_jax.checkpoint import Checkpointer, abstract_like
from img2imu_jax.evaluators import Evaluators
from img2imu_jax.images.pipeline import HostBatches, ImageBatches
from img2imu_jax.images.sources import load_builder
from img2imu_jax.imu.window_batches import HostWindows, pretraining_corpus
from img2imu_jax.methods import Method, compute_dtype, get_method, method_class
from img2imu_jax.multihost import PreemptionWatch
from img2imu_jax.parallel import DATA_AXIS, data_mesh, pmean
from img2imu_jax.paths import user_path
from img2imu_jax.profiling import StepProfiler
from img2imu_jax.torch_weights import initialise_encoder
from img2imu_jax.spectrogram import normalize_imagenet
from img2imu_jax.writers import training_writer

log = logging.getLogger(__name__)


class NonFiniteLoss(RuntimeError):
    """Training diverged; the last good checkpoint is left as it was."""


def train(config: ml_collections.ConfigDict, workdir: str | os.PathLike, *,
          allow_config_change: bool = False) -> dict[str, float]:
    """Pre-trains as `config` says, checkpointing into `workdir` (local or gs://); returns the
    last metrics. Resuming with another config needs `allow_config_change` (see run_info)."""
    workdir = user_path(workdir, what="workdir")
    workdir.mkdir(parents=True, exist_ok=True)
    compile_cache.enable(config.compilation_cache_dir)
    mesh = data_mesh()
    replicated = NamedSharding(mesh, PartitionSpec())

    # ---- Data: this process's share, read on the host, augmented on the device.
    local_batch = config.batch_size // jax.process_count()
    host_input, input_stats = _host_input(config, local_batch)
    steps_per_epoch = max(1, host_input(None).records_per_epoch // local_batch)
    total_steps = config.total_steps or math.ceil(config.epochs * steps_per_epoch)

    # ---- Method, model, optimizer, the initial state and the step.
    run = setup(config, mesh, steps_per_epoch=steps_per_epoch, total_steps=total_steps,
                input_stats=input_stats)
    step_fn, progress, state = run.step_fn, run.method.progress, run.state
    del run  # a restore replaces `state`: nothing may keep the initial one on the devices

    # ---- Restore, or start fresh.
    checkpoints = Checkpointer(workdir, save_every=config.checkpoint_every,
                               keep=config.keep_checkpoints)
    run_info.stamp(workdir, config, resuming=checkpoints.latest_step() is not None,
                   allow_config_change=allow_config_change)
    data_state = None
    restored = checkpoints.restore(abstract_like(state, replicated))
    if restored is not None:
        step, state, saved_data = restored
        data_state = {name: values[jax.process_index()] for name, values in saved_data.items()}
        log.info("resumed from step %d of %d (input at %s)", step, total_steps, data_state)
    start = int(state["train"]["step"])

    # ---- The loop.
    host = host_input(data_state)
    writer = training_writer(workdir, config, resumed_step=start)
    profiler = StepProfiler(workdir, config.profile_steps)
    stop = PreemptionWatch(start)
    report = _Reporter(writer, workdir, config, total_steps, progress)
    in_flight: collections.deque[tuple[int, dict]] = collections.deque()
    # Evaluators (config.evals) read the state between steps and never write it (process 0).
    evals = Evaluators(config) if jax.process_index() == 0 else None
    if evals and start == 0:
        report.probe(0, evals.run(state, 0, total_steps))  # the random-init reference
    with ImageBatches(host, mesh, prefetch=config.data.prefetch) as batches:
        for step in range(start + 1, total_steps + 1):
            profiler.before(step)
            state, device_metrics = step_fn(state, next(batches))
            profiler.after(step, device_metrics)
            in_flight.append((step, device_metrics))
            if len(in_flight) > config.steps_in_flight:  # the host stays this many steps ahead
                report.add(*in_flight.popleft())
            probing = bool(evals) and evals.due(step, total_steps)
            preempted = stop.requested(step)
            saving = step % config.checkpoint_every == 0 or step == total_steps or preempted
            if probing or saving:
                while in_flight:  # every step up to here is checked before a probe or a save
                    report.add(*in_flight.popleft())
                report.flush(force_log=True,
                             extra=evals.run(state, step, total_steps) if probing else None)
            if saving:
                _assert_replicas_agree(state)
                checkpoints.save(step, state, _data_positions(batches.state()), force=True)
                writer.flush()  # metrics.jsonl on gs:// is uploaded in batches (see writers)
            if preempted:
                log.info("preempted: saved step %d, exiting", step)
                break
    profiler.close(state)
    checkpoints.wait()
    checkpoints.close()
    writer.close()
    stop.restore()
    return report.last


def _host_input(config: ml_collections.ConfigDict, local_batch: int):
    """`(host_input, input_stats)`: `host_input(position)` makes this process's host batches
    from a saved input position (None: the start); `input_stats` are the sensor corpus's
    per-axis `input_mean`, `input_std` (its windows come normalised by them), None for photos."""
    if method_class(config.method).input == "windows":
        corpus = pretraining_corpus(config.data)
        windows = corpus.normalised()
        log.info("sensor corpus %s: %d windows of %s s at %s Hz", ", ".join(corpus.sources),
                 len(corpus), corpus.seconds, corpus.sample_rate)
        return (lambda position: HostWindows(windows, batch_size=local_batch, seed=config.seed,
                                             state=position),
                {"input_mean": corpus.mean, "input_std": corpus.std})
    if jax.process_index() == 0:  # bundled photos and folders are written once, by process 0
        load_builder(config.data.dataset, config.data.data_dir or None)
    multihost_utils.sync_global_devices("input dataset ready")
    builder = load_builder(config.data.dataset, config.data.data_dir or None)
    return (lambda position: HostBatches(
        builder, batch_size=local_batch, seed=config.seed, split=config.data.split,
        image_size=tuple(config.data.image_size), shuffle_buffer=config.data.shuffle_buffer,
        state=position), None)


@dataclasses.dataclass(frozen=True)
class Setup:
    """Everything a pre-training needs before its first batch; `setup()` makes it."""

    state: dict  # replicated on the mesh, named as the checkpoint stores it
    step_fn: Callable  # jitted, donating: (state, batch) -> (state, metrics)
    schedule: optax.Schedule
    tx: optax.GradientTransformation
    graphdef: nnx.GraphDef
    method: Method


def setup(config: ml_collections.ConfigDict, mesh: jax.sharding.Mesh, *, steps_per_epoch: int,
          total_steps: int, input_stats: dict[str, np.ndarray] | None = None,
          abstract: bool = False) -> Setup:
    """The method, optimizer, schedule, initial state and compiled-on-first-call step that
    `config` describes on `mesh`: the one set-up the trainer, the tests and benchmarks share.
    `input_stats` (the 1D methods' corpus `input_mean`, `input_std`) go into the state, so
    every checkpoint carries the normalisation its encoder was trained under. `abstract`: the
    state as shapes and shardings only, nothing allocated (to compile the step for devices
    this host does not have)."""
    method = get_method(config)
    per_device = config.batch_size // mesh.size
    if config.grad_chunks > 1 and not method.supports_grad_chunks:
        raise ValueError(f"method {config.method!r} does not support grad_chunks > 1")
    if per_device % config.grad_chunks:
        raise ValueError(f"grad_chunks {config.grad_chunks} must divide the per-device batch "
                         f"{per_device} (batch_size {config.batch_size} over {mesh.size} devices)")
    schedule = optim.learning_rate_schedule(
        config.optim.base_lr, batch_size=config.batch_size, scaling=config.optim.lr_scaling,
        warmup_steps=round(config.optim.warmup_epochs * steps_per_epoch),
        total_steps=total_steps,
    )
    tx = optim.make_optimizer(config.optim.name, schedule,
                              weight_decay=config.optim.weight_decay,
                              momentum=config.optim.momentum)
    views = (method.views if method.input == "windows" else
             image_views(make_augment(config.augment.spec, **dict(config.augment.params)),
                         compute_dtype(config.model.dtype)))
    replicated = NamedSharding(mesh, PartitionSpec())
    if abstract:
        state = jax.tree.map(
            lambda leaf: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=replicated),
            jax.eval_shape(lambda: initial_state(config, method, tx, input_stats)))
    else:
        state = jax.device_put(initial_state(config, method, tx, input_stats), replicated)
    step_fn = shard_step(per_device_step(method, tx, schedule, views), mesh)
    return Setup(state=state, step_fn=step_fn, schedule=schedule, tx=tx,
                 graphdef=method.graphdef, method=method)


def initial_state(
    config: ml_collections.ConfigDict, method: Method, tx: optax.GradientTransformation,
    input_stats: dict[str, np.ndarray] | None = None,
) -> dict:
    """The whole training state as one pytree, named as the checkpoint stores it; the encoder
    from `config.init`'s torchvision weights when set (before MoCo copies it to its key
    encoder)."""
    model = method.build()
    initialise_encoder(model.encoder, config.get("init", ""))
    train = {
        "step": jnp.zeros((), jnp.int32),
        "key": jax.random.key_data(jax.random.key(config.seed)),
        **{name: jnp.asarray(value, jnp.float32) for name, value in (input_stats or {}).items()},
        **method.init_extra(model),
    }
    return {"model": nnx.state(model), "opt_state": tx.init(nnx.state(model, nnx.Param)),
            "train": train}


def image_views(augment, dtype=jnp.float32):
    """`views(key, images, indices)`: two augmented, ImageNet-normalised views of uint8 images,
    in the encoder's compute `dtype`.

    The augmentations compute in float32; the cast is the last op of their program (the first
    convolution would cast anyway), so XLA fuses it there instead of reading and writing a
    float32 view again: on TPU v5e that was 0.27 ms per view per 256 images (RESULTS.md).
    """

    def views(key: jax.Array, images: jax.Array, indices: jax.Array):
        pixels = images.astype(jnp.float32) / 255.0
        # Two calls, not one vmap over the views: that measured 4× slower on XLA:CPU (RESULTS.md).
        return tuple(normalize_imagenet(augment(jax.random.fold_in(key, view), pixels, indices))
                     .astype(dtype) for view in (0, 1))

    return views


# Training-state entries the step carries unchanged and the method never sees.
INPUT_STATS = ("input_mean", "input_std")


def per_device_step(
    method: Method,
    tx: optax.GradientTransformation,
    schedule: optax.Schedule,
    views,
):
    """One device's share of a training step: `(state, batch) -> (state, metrics)`.

    Run it under `shard_step` (or `jax.pmap` with axis name `'data'`): collectives name the
    axis, so negatives, gradients and BatchNorm statistics cover the global batch.
    `views(key, batch, indices)` (`image_views` for photos, the method's own for sensor
    windows) gets each example's global index, so views do not depend on how the batch is
    split. The method supplies the loss and its extra state; this step does the rest the
    same way for every method.
    """

    def step_fn(state: dict, batch: jax.Array) -> tuple[dict, dict]:
        train_state = state["train"]
        step = train_state["step"]
        n = batch.shape[0]
        indices = jax.lax.axis_index(DATA_AXIS) * n + jnp.arange(n)
        key = jax.random.fold_in(jax.random.wrap_key_data(train_state["key"]), step)
        view_a, view_b = views(key, batch, indices)
        params, batch_stats = nnx.split_state(state["model"], nnx.Param, nnx.BatchStat)
        carried = {name: train_state[name] for name in INPUT_STATS if name in train_state}
        extra = {name: value for name, value in train_state.items()
                 if name not in ("step", "key", *carried)}

        (loss, method_metrics, aux, new_stats), grads = method.value_and_grad(
            params, batch_stats, view_a, view_b, extra, jax.random.fold_in(key, 2))
        # pmap semantics (shard_step turns off check_vma): each device differentiates its own
        # loss, autodiff through the all_gathers adds the other devices' terms, and the mean
        # over devices is the gradient of the global loss.
        grads = pmean(grads, DATA_AXIS)
        updates, opt_state = tx.update(grads, state["opt_state"], params)
        new_params = optax.apply_updates(params, updates)
        new_train = {"step": step + 1, "key": train_state["key"], **carried,
                     **method.after_update(extra, new_params, aux)}
        metrics = {
            "loss": pmean(loss, DATA_AXIS),
            **{name: pmean(value, DATA_AXIS) for name, value in method_metrics.items()},
            "learning_rate": schedule(step),
            "grad_norm": optax.tree.norm(grads),
        }
        new_state = {"model": nnx.merge_state(new_params, new_stats), "opt_state": opt_state,
                     "train": new_train}
        return new_state, metrics

    return step_fn


def shard_step(step_fn, mesh: jax.sharding.Mesh):
    """The per-device step over every device of `mesh`: replicated state, batch split on 'data'.

    `check_vma=False` gives the per-device program pmap's semantics, where gradients of
    replicated parameters are per-device and averaged explicitly, so the very same function
    runs under `jax.pmap` with identical results (tested).
    """
    return jax.jit(
        jax.shard_map(step_fn, mesh=mesh,
                      in_specs=(PartitionSpec(), PartitionSpec(DATA_AXIS)),
                      out_specs=(PartitionSpec(), PartitionSpec()), check_vma=False),
        donate_argnums=0,
    )


def _assert_replicas_agree(state: dict) -> None:
    """Every process must hold the same parameters; a silent divergence would poison the run."""
    if jax.process_count() > 1:
        fingerprint = np.asarray(jax.device_get(optax.tree.norm(state["model"])))
        multihost_utils.assert_equal(fingerprint, "processes hold different model parameters")


def _data_positions(position: dict[str, int]) -> dict[str, list[int]]:
    """Every process's input position, so each resumes its own share."""
    gathered = multihost_utils.process_allgather(
        np.array([position["epoch"], position["position"]]), tiled=False
    ).reshape(-1, 2)
    return {"epoch": gathered[:, 0].tolist(), "position": gathered[:, 1].tolist()}


class _StepTimer:
    """Wall time between logged steps → step time and images/s, views/s per device."""

    def __init__(self, global_batch: int, devices: int):
        self.global_batch, self.devices = global_batch, devices
        self.last: tuple[int, float] | None = None
        self.started = time.monotonic()

    def rates(self, step: int) -> dict[str, float]:
        now = time.monotonic()
        last, self.last = self.last, (step, now)
        if last is None or step == last[0]:
            return {}
        seconds = (now - last[1]) / (step - last[0])
        per_device = self.global_batch / self.devices / seconds
        return {"step_time_s": seconds, "images_per_s_per_device": per_device,
                "views_per_s_per_device": 2 * per_device}

    def exclude(self, seconds: float) -> None:
        """Time spent outside training steps (the probe) is not step time."""
        if self.last is not None:
            self.last = (self.last[0], self.last[1] + seconds)


class _Reporter:
    """Checks every step's loss and logs, reading the device every `log_every` steps only:
    TensorBoard, `metrics.jsonl` and a progress line on process 0.

    `add` takes a step whose successors are already queued and waits for it to finish, which
    bounds how far the host runs ahead without ever draining the device's queue; its metrics
    stay on the device until `flush` fetches all pending steps in one transfer and names the
    first non-finite loss among them.
    """

    def __init__(self, writer, workdir: epath.Path, config: ml_collections.ConfigDict, total: int,
                 progress: tuple[tuple[str, str], ...]):
        self.writer, self.workdir, self.total = writer, workdir, total
        self.progress = progress  # the method's (metric, label) pairs
        self.log_every = config.log_every
        self.timer = _StepTimer(config.batch_size, jax.device_count())
        self.pending: list[tuple[int, dict]] = []
        self.last_step = 0
        self.last: dict[str, float] = {}

    def add(self, step: int, device_metrics: dict) -> None:
        jax.block_until_ready(device_metrics["loss"])
        self.pending.append((step, device_metrics))
        if step % self.log_every == 0:
            self.flush()

    def flush(self, *, force_log: bool = False, extra: dict[str, float] | None = None) -> None:
        """Fetches the pending steps; logs the last of them (with `extra`, the probe's row)."""
        if extra:  # the evaluators ran after the last step: their time is not step time
            self.timer.exclude(sum(v for k, v in extra.items() if k.endswith("/seconds")))
        if not self.pending:
            if extra:  # that step was logged already
                self._write(self.last_step, dict(extra))
            return
        steps = [step for step, _ in self.pending]
        fetched = jax.device_get([metrics for _, metrics in self.pending])
        self.pending = []
        for step, values in zip(steps, fetched):
            if not math.isfinite(float(values["loss"])):
                raise NonFiniteLoss(
                    f"loss is {float(values['loss'])} at step {step}; stopping. The last "
                    f"checkpoint saved before it is intact in {self.workdir / 'checkpoints'}"
                )
        step = self.last_step = steps[-1]
        metrics = {name: float(value) for name, value in fetched[-1].items()}
        self.last = metrics
        if not (force_log or extra or step % self.log_every == 0):
            return
        metrics.update(self.timer.rates(step))
        metrics.update(extra or {})
        self._write(step, metrics)

    def probe(self, step: int, metrics: dict[str, float]) -> None:
        """A probe row with no training step behind it (step 0: the random-init encoder)."""
        self._write(step, metrics)

    def _write(self, step: int, metrics: dict[str, float]) -> None:
        self.writer.write_scalars(step, metrics)  # TensorBoard, metrics.jsonl (see writers)
        if jax.process_index() > 0:
            return
        parts = []
        if "loss" in metrics:
            shown = "".join(f", {label} {metrics[name]:.3f}" for name, label in self.progress)
            parts.append(f"loss {metrics['loss']:.4f}{shown}, lr {metrics['learning_rate']:.2e}")
        for evaluator in dict.fromkeys(name.partition("/")[0] for name in metrics
                                       if "/f1_" in name):
            scores = [f"{name.partition('/f1_')[2]} {100 * value:.1f}"
                      for name, value in metrics.items() if name.startswith(f"{evaluator}/f1_")]
            parts.append(f"{evaluator} macro-F1 % {' / '.join(scores)}")
        speed = ""
        if "step_time_s" in metrics:
            left = int(metrics["step_time_s"] * (self.total - step))
            speed = (f", {metrics['images_per_s_per_device']:.0f} img/s/device, ETA "
                     f"{left // 3600}:{left // 60 % 60:02d}:{left % 60:02d}")
        print(f"step {step}/{self.total}: {', '.join(parts)}{speed}", flush=True)
