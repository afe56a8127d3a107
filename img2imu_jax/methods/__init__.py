"""Pre-training methods as plug-ins: one module per method, found by its file name.

`config.method` names a module here (`moco`, `simclr`, `simsiam` on photos; `simclr_1d`,
`multitask_1d`, `cpc_1d` on sensor windows); the module's `METHOD` is a `Method` subclass.
The shared step (`pretrain.per_device_step`) makes two views, calls
`Method.loss` under `jax.value_and_grad`, averages the gradients over `'data'`, applies the
optimizer and then `Method.after_update`; it never asks which method it runs.

Adding a method is one new file and a config. BYOL, say, would be `methods/byol.py` with a
`Byol(Method)` whose `build` adds the predictor (as SimSiam's does), whose `init_extra` holds
the target network (as MoCo's holds its key encoder), whose `loss` is the regression loss
and whose `after_update` is the EMA, plus `configs/byol.py` setting `method = "byol"` and a
`config.byol` section with its keys (the EMA rate).
"""

from __future__ import annotations

import importlib
import pkgutil

import jax
import jax.numpy as jnp
import ml_collections
from flax import nnx

from img2imu_jax.models import build_model
from img2imu_jax.parallel import DATA_AXIS

METHODS = tuple(sorted(info.name for info in pkgutil.iter_modules(__path__)
                       if not info.name.startswith("_")))

Metrics = dict[str, jax.Array]


class Method:
    """What a pre-training method adds to the shared step; subclasses override what they need.

    - `build()`: the online network, whose `Param`s the optimizer trains and whose state is
      `model/...` in the checkpoint.
    - `init_extra(model)`: extra training state (key encoder, queue…), stored flat in
      `train/...` beside `step` and `key`, so its names are the checkpoint's.
    - `loss(params, batch_stats, view_a, view_b, extra, key)`: the per-device loss of the two
      views; returns `(loss, metrics, aux, new_batch_stats)`. Gradients flow into `params`
      only. `metrics` are per-device values the step averages over `'data'`; `aux` goes to
      `after_update`. Collectives name `'data'`.
    - `after_update(extra, params, aux)`: the new extra state, given the updated parameters.
    - `chunked_value_and_grad(...)`: the same loss and gradient by GradCache, for
      `config.grad_chunks > 1` (MoCo and SimCLR have one).

    `progress` lists the metrics of the progress line as `(name, label)`. `input` is what the
    trainer feeds the step: 'images' (uint8 photos, augmented by `config.augment`) or
    'windows' (a sensor corpus's normalised windows; such a method makes its own views,
    `methods._sensor.SensorMethod`).
    """

    progress: tuple[tuple[str, str], ...] = ()
    input = "images"
    supports_grad_chunks = False

    def __init__(self, config: ml_collections.ConfigDict):
        self.config = config
        self.graphdef = nnx.graphdef(nnx.eval_shape(self.build))

    def build(self, *, bn_axis_name: str | None = DATA_AXIS) -> nnx.Module:
        return build(self.config, bn_axis_name=bn_axis_name)

    def init_extra(self, model: nnx.Module) -> dict:
        return {}

    def loss(self, params: nnx.State, batch_stats: nnx.State, view_a: jax.Array,
             view_b: jax.Array, extra: dict, key: jax.Array
             ) -> tuple[jax.Array, Metrics, object, nnx.State]:
        raise NotImplementedError

    def after_update(self, extra: dict, params: nnx.State, aux: object) -> dict:
        return extra

    def value_and_grad(self, params: nnx.State, batch_stats: nnx.State, view_a: jax.Array,
                       view_b: jax.Array, extra: dict, key: jax.Array
                       ) -> tuple[tuple[jax.Array, Metrics, object, nnx.State], nnx.State]:
        """`(loss, metrics, aux, new_batch_stats)` and the per-device gradient w.r.t. `params`:
        autodiff of `loss`, or GradCache in `config.grad_chunks` chunks for methods that say
        how (`chunked_value_and_grad`)."""
        if self.config.grad_chunks > 1:
            return self.chunked_value_and_grad(params, batch_stats, view_a, view_b, extra, key,
                                               self.config.grad_chunks)

        def loss_fn(trainable):
            loss, metrics, aux, stats = self.loss(trainable, batch_stats, view_a, view_b,
                                                  extra, key)
            return loss, (metrics, aux, stats)

        (loss, (metrics, aux, stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        return (loss, metrics, aux, stats), grads

    def chunked_value_and_grad(self, params, batch_stats, view_a, view_b, extra, key,
                               chunks: int):
        """GradCache (`img2imu_jax.gradcache`): the encoder runs in `chunks` parts, each
        normalised with its own BatchNorm statistics (over that chunk of every device).
        Methods that have it set `supports_grad_chunks`."""
        raise NotImplementedError


def build(
    config: ml_collections.ConfigDict, *, bn_axis_name: str | None = DATA_AXIS,
    predictor_features: int = 0,
) -> nnx.Module:
    """The encoder + projection head the config describes, BatchNorm global over `'data'`
    (`bn_axis_name=None`: over whatever batch each call sees)."""
    return build_model(
        encoder=config.model.encoder, depth=config.model.depth, width=config.model.width,
        fc_features=config.model.fc_features, head=config.model.head,
        head_layers=config.model.head_layers,
        hidden_features=config.model.hidden_features or None,
        out_features=config.model.out_features,
        dtype=compute_dtype(config.model.dtype),
        bn_axis_name=bn_axis_name, predictor_features=predictor_features,
        rngs=nnx.Rngs(config.seed),
    )


def compute_dtype(name: str) -> jnp.dtype:
    """'auto' → bfloat16 on GPU and TPU, float32 on CPU (bf16 is slower there:
    benchmarks/RESULTS.md); otherwise the named dtype."""
    if name == "auto":
        return jnp.dtype(jnp.float32 if jax.default_backend() == "cpu" else jnp.bfloat16)
    return jnp.dtype(name)


def get_method(config: ml_collections.ConfigDict) -> Method:
    """The configured method; `.build()` makes its initial network, `.graphdef` its layout."""
    return method_class(config.method)(config)


def method_class(name: str) -> type[Method]:
    """The `Method` subclass `name` (a module here) defines, without building its network."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; known methods: {', '.join(METHODS)}")
    return importlib.import_module(f"{__name__}.{name}").METHOD
