"""Contrastive pre-training, readable top to bottom: the same code from one CPU to a TPU pod.

The step is written as the per-device program — augment this device's images, encode both
views, a loss whose negatives come from every device, gradients and BatchNorm statistics
averaged over the `'data'` axis — and mapped over every device of every process with
`jax.shard_map` under `jax.jit`, donating the state. Two methods share it:

- `moco` (the paper): the query encoder learns by InfoNCE against a queue of keys from a
  momentum (EMA) key encoder; every device's keys enter the queue.
- `simclr`: NT-Xent over both views of the global batch.

The state is one pytree with the checkpoint's names: `model` (`encoder`, `head`), `opt_state`
and `train` (step, root key, and for MoCo the key encoder and the queue). With the input
position beside it in the checkpoint, a restarted run continues exactly where it stopped.
"""

from __future__ import annotations

import json
import logging
import math
import signal
import threading
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from clu import metric_writers
from flax import nnx
from jax.experimental import multihost_utils
from jax.sharding import NamedSharding, PartitionSpec

from img2imu_jax import losses, optim
from img2imu_jax.augment import make_augment
from img2imu_jax.checkpoint import Checkpointer, abstract_like
from img2imu_jax.images.pipeline import HostBatches, ImageBatches
from img2imu_jax.images.sources import load_builder
from img2imu_jax.models import build_model
from img2imu_jax.torch_weights import initialise_encoder
from img2imu_jax.parallel import DATA_AXIS, data_mesh
from img2imu_jax.spectrogram import normalize_imagenet

log = logging.getLogger(__name__)


class NonFiniteLoss(RuntimeError):
    """Training diverged; the last good checkpoint is left as it was."""


def train(config: ml_collections.ConfigDict, workdir: str | Path) -> dict[str, float]:
    """Pre-trains as `config` says, checkpointing into `workdir`; returns the last metrics."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    mesh = data_mesh()
    replicated = NamedSharding(mesh, PartitionSpec())

    # ---- Data: this process's share, decoded on the host, augmented on the device.
    if jax.process_index() == 0:  # bundled photos and folders are written once, by process 0
        load_builder(config.data.dataset, config.data.data_dir or None)
    multihost_utils.sync_global_devices("input dataset ready")
    builder = load_builder(config.data.dataset, config.data.data_dir or None)
    local_batch = config.batch_size // jax.process_count()
    steps_per_epoch = max(1, HostBatches(
        builder, batch_size=local_batch, seed=config.seed, split=config.data.split,
        image_size=tuple(config.data.image_size),
    ).records_per_epoch // local_batch)
    total_steps = config.total_steps or math.ceil(config.epochs * steps_per_epoch)
    augment = make_augment(config.augment.spec, **dict(config.augment.params))

    # ---- Model, optimizer and the initial state.
    model = build(config)
    schedule = optim.learning_rate_schedule(
        config.optim.base_lr, batch_size=config.batch_size, scaling=config.optim.lr_scaling,
        warmup_steps=round(config.optim.warmup_epochs * steps_per_epoch),
        total_steps=total_steps,
    )
    tx = optim.make_optimizer(config.optim.name, schedule,
                              weight_decay=config.optim.weight_decay,
                              momentum=config.optim.momentum)
    state = jax.device_put(initial_state(config, model, tx), replicated)
    step_fn = shard_step(
        per_device_step(config, nnx.graphdef(model), tx, schedule, augment), mesh
    )

    # ---- Restore, or start fresh.
    checkpoints = Checkpointer(workdir, save_every=config.checkpoint_every,
                               keep=config.keep_checkpoints)
    data_state = None
    restored = checkpoints.restore(abstract_like(state, replicated))
    if restored is not None:
        step, state, saved_data = restored
        data_state = {name: values[jax.process_index()] for name, values in saved_data.items()}
        log.info("resumed from step %d of %d (input at %s)", step, total_steps, data_state)
    start = int(state["train"]["step"])

    # ---- The loop.
    host = HostBatches(builder, batch_size=local_batch, seed=config.seed,
                       split=config.data.split, image_size=tuple(config.data.image_size),
                       shuffle_buffer=config.data.shuffle_buffer, state=data_state)
    writer = metric_writers.create_default_writer(
        workdir, just_logging=jax.process_index() > 0, asynchronous=True
    )
    stop = _PreemptionWatch()
    report = _Reporter(writer, workdir, config, total_steps)
    previous: tuple[int, dict] | None = None
    with ImageBatches(host, mesh) as batches:
        for step in range(start + 1, total_steps + 1):
            state, device_metrics = step_fn(state, next(batches))
            if previous is not None:  # the previous step's numbers, while this one runs
                report(*previous)
            previous = (step, device_metrics)
            preempted = stop.requested(step)
            if step % config.checkpoint_every == 0 or step == total_steps or preempted:
                report(*previous, force_log=True)
                previous = None
                _assert_replicas_agree(state)
                checkpoints.save(step, state, _data_positions(batches.state()), force=True)
            if preempted:
                log.info("preempted: saved step %d, exiting", step)
                break
    checkpoints.wait()
    checkpoints.close()
    writer.close()
    stop.restore()
    return report.last


def build(config: ml_collections.ConfigDict) -> nnx.Module:
    """The encoder + projection head the config describes, BatchNorm global over `'data'`;
    the encoder from `config.init`'s torchvision weights when set."""
    model = build_model(
        depth=config.model.depth, width=config.model.width, head=config.model.head,
        head_layers=config.model.head_layers,
        hidden_features=config.model.hidden_features or None,
        out_features=config.model.out_features,
        dtype=jnp.bfloat16 if config.model.bf16 else jnp.float32,
        bn_axis_name=DATA_AXIS, rngs=nnx.Rngs(config.seed),
    )
    initialise_encoder(model.encoder, config.get("init", ""))
    return model


def initial_state(
    config: ml_collections.ConfigDict, model: nnx.Module, tx: optax.GradientTransformation
) -> dict:
    """The whole training state as one pytree, named as the checkpoint stores it."""
    train = {
        "step": jnp.zeros((), jnp.int32),
        "key": jax.random.key_data(jax.random.key(config.seed)),
    }
    if config.method == "moco":
        queue = jax.random.normal(jax.random.key(config.seed + 1),
                                  (config.moco.queue_size, config.model.out_features))
        train.update(
            key_model=jax.tree.map(jnp.copy, nnx.state(model)),
            queue=losses.l2_normalize(queue),
            queue_ptr=jnp.zeros((), jnp.int32),
        )
    return {"model": nnx.state(model), "opt_state": tx.init(nnx.state(model, nnx.Param)),
            "train": train}


def per_device_step(
    config: ml_collections.ConfigDict,
    graphdef: nnx.GraphDef,
    tx: optax.GradientTransformation,
    schedule: optax.Schedule,
    augment,
):
    """One device's share of a training step: `(state, images) -> (state, metrics)`.

    Run it under `shard_step` (or `jax.pmap` with axis name `'data'`): collectives name the
    axis, so negatives, gradients and BatchNorm statistics cover the global batch.
    `augment(key, images, indices)` gets each example's global index, so views do not depend
    on how the batch is split.
    """

    def step_fn(state: dict, images: jax.Array) -> tuple[dict, dict]:
        train_state = state["train"]
        step = train_state["step"]
        n = images.shape[0]
        indices = jax.lax.axis_index(DATA_AXIS) * n + jnp.arange(n)
        key = jax.random.fold_in(jax.random.wrap_key_data(train_state["key"]), step)
        pixels = images.astype(jnp.float32) / 255.0
        view_a = normalize_imagenet(augment(jax.random.fold_in(key, 0), pixels, indices))
        view_b = normalize_imagenet(augment(jax.random.fold_in(key, 1), pixels, indices))
        params, batch_stats = nnx.split_state(state["model"], nnx.Param, nnx.BatchStat)

        if config.method == "moco":  # keys from the momentum encoder: no gradient flows there
            key_params, key_stats = nnx.split_state(train_state["key_model"], nnx.Param,
                                                    nnx.BatchStat)
            key_net = nnx.merge(graphdef, key_params, key_stats)
            key_net.train()
            _, keys = key_net(view_b)
            keys = jax.lax.stop_gradient(keys)

        def loss_fn(trainable):
            # Fresh BatchStat variables in this trace, where BatchNorm updates them.
            net = nnx.merge(graphdef, trainable, jax.tree.map(jnp.asarray, batch_stats))
            net.train()
            if config.method == "simclr":
                _, z = net(jnp.concatenate([view_a, view_b]))
                loss, top1 = losses.nt_xent(z[:n], z[n:], config.temperature,
                                            axis_name=DATA_AXIS)
            else:
                _, queries = net(view_a)
                loss, top1 = losses.info_nce(queries, keys, train_state["queue"],
                                             config.temperature)
            return loss, (top1, nnx.state(net, nnx.BatchStat))

        (loss, (top1, new_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        # pmap semantics (shard_step turns off check_vma): each device differentiates its own
        # loss, autodiff through the all_gathers adds the other devices' terms, and the mean
        # over devices is the gradient of the global loss.
        grads = jax.lax.pmean(grads, DATA_AXIS)
        updates, opt_state = tx.update(grads, state["opt_state"], params)
        new_params = optax.apply_updates(params, updates)
        new_train = dict(train_state, step=step + 1)
        if config.method == "moco":
            m = config.moco.momentum
            new_key_params = jax.tree.map(lambda k, q: m * k + (1 - m) * q, key_params,
                                          new_params)
            new_train["key_model"] = nnx.merge_state(new_key_params,
                                                     nnx.state(key_net, nnx.BatchStat))
            new_train["queue"], new_train["queue_ptr"] = losses.enqueue(
                train_state["queue"], train_state["queue_ptr"], keys, axis_name=DATA_AXIS
            )
        metrics = {
            "loss": jax.lax.pmean(loss, DATA_AXIS),
            "contrastive_top1": jax.lax.pmean(top1, DATA_AXIS),
            "learning_rate": schedule(step),
            "grad_norm": optax.global_norm(grads),
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
        fingerprint = np.asarray(jax.device_get(optax.global_norm(state["model"])))
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


class _Reporter:
    """Checks every step's loss (one step behind, so the device never waits) and logs every
    `log_every` steps: TensorBoard, `metrics.jsonl` and a progress line on process 0."""

    def __init__(self, writer, workdir: Path, config: ml_collections.ConfigDict, total: int):
        self.writer, self.workdir, self.total = writer, workdir, total
        self.log_every = config.log_every
        self.timer = _StepTimer(config.batch_size, jax.device_count())
        self.last: dict[str, float] = {}

    def __call__(self, step: int, device_metrics: dict, *, force_log: bool = False) -> None:
        metrics = {name: float(value) for name, value in jax.device_get(device_metrics).items()}
        if not math.isfinite(metrics["loss"]):
            raise NonFiniteLoss(
                f"loss is {metrics['loss']} at step {step}; stopping. The last checkpoint "
                f"saved before it is intact in {self.workdir / 'checkpoints'}"
            )
        self.last = metrics
        if not (force_log or step % self.log_every == 0):
            return
        metrics.update(self.timer.rates(step))
        self.writer.write_scalars(step, metrics)
        if jax.process_index() > 0:
            return
        with open(self.workdir / "metrics.jsonl", "a") as out:
            out.write(json.dumps({"step": step, **metrics}) + "\n")
        speed = ""
        if "step_time_s" in metrics:
            left = int(metrics["step_time_s"] * (self.total - step))
            speed = (f", {metrics['images_per_s_per_device']:.0f} img/s/device, ETA "
                     f"{left // 3600}:{left // 60 % 60:02d}:{left % 60:02d}")
        print(f"step {step}/{self.total}: loss {metrics['loss']:.4f}, top-1 "
              f"{metrics['contrastive_top1']:.3f}, lr {metrics['learning_rate']:.2e}{speed}",
              flush=True)


class _PreemptionWatch:
    """SIGTERM (or JAX's multi-host preemption notice) → stop at the next step boundary."""

    def __init__(self):
        self.flag = threading.Event()
        self.previous = signal.signal(signal.SIGTERM, lambda *_: self.flag.set())

    def requested(self, step: int) -> bool:
        if jax.process_count() > 1:
            return multihost_utils.reached_preemption_sync_point(step)
        return self.flag.is_set()

    def restore(self) -> None:
        signal.signal(signal.SIGTERM, self.previous)
