"""Learning-rate schedules and optimizers for contrastive pre-training (LARS, Adam, SGD).

Params and optimizer state are float32 even when the model computes in bf16: the model casts
its float32 params per layer, so the optimizer only ever sees float32 params and gradients.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import optax

SCALINGS = ("linear", "sqrt", "none")
OPTIMIZERS = ("lars", "adam", "sgd")


def learning_rate_schedule(
    base_lr: float,
    *,
    batch_size: int,
    scaling: str = "linear",
    reference_batch: int = 256,
    warmup_steps: int,
    total_steps: int,
    end_lr_fraction: float = 0.0,
) -> optax.Schedule:
    """Linear warm-up from 0 to the peak, then cosine decay to `end_lr_fraction × peak`.

    The peak is `base_lr × batch_size / reference_batch` ('linear', SimCLR's default),
    `base_lr × sqrt(batch_size / reference_batch)` ('sqrt') or `base_lr` ('none'). SimCLR's
    own 'sqrt' is `lr × sqrt(batch_size)`: its 0.075 is `base_lr = 0.075 × 16 = 1.2` here.
    The peak is reached at `warmup_steps`; from `total_steps` on, the rate stays at its end.
    """
    if scaling not in SCALINGS:
        raise ValueError(f"scaling must be one of {SCALINGS}; got {scaling!r}")
    if base_lr < 0:
        raise ValueError(f"base_lr must be >= 0; got {base_lr}")
    if batch_size < 1 or reference_batch < 1:
        raise ValueError(
            f"batch_size and reference_batch must be >= 1; got {batch_size}, {reference_batch}"
        )
    if total_steps < 1:
        raise ValueError(f"total_steps must be >= 1; got {total_steps}")
    if not 0 <= warmup_steps < total_steps:
        raise ValueError(
            "need 0 <= warmup_steps < total_steps (the cosine decay needs at least one step);"
            f" got warmup_steps={warmup_steps}, total_steps={total_steps}"
        )
    if not 0.0 <= end_lr_fraction <= 1.0:
        raise ValueError(f"end_lr_fraction must be in [0, 1]; got {end_lr_fraction}")
    ratio = batch_size / reference_batch
    peak = base_lr * {"linear": ratio, "sqrt": math.sqrt(ratio), "none": 1.0}[scaling]
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0,
        peak_value=peak,
        warmup_steps=warmup_steps,
        decay_steps=total_steps,
        end_value=end_lr_fraction * peak,
    )


def decay_mask(params: Any) -> Any:
    """True for conv and dense kernels (ndim ≥ 2), False for biases and BatchNorm scale/bias.

    Weight decay and the LARS trust ratio apply only where this is True, as in SimCLR, BYOL and
    solo-learn: adapting or shrinking 1-D parameters hurts. Works on any pytree of arrays,
    `nnx.State` included (its `Param` wrappers come back holding bools).
    """
    return jax.tree.map(lambda leaf: jnp.ndim(leaf) >= 2, params)


def make_optimizer(
    name: str,
    schedule: optax.ScalarOrSchedule,
    *,
    weight_decay: float = 0.0,
    momentum: float = 0.9,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    trust_coefficient: float = 0.001,
    clip_grad_norm: float | None = None,
) -> optax.GradientTransformation:
    """The named optimizer, with decay (and LARS adaptation) masked by `decay_mask`.

    - 'lars': `optax.lars`. Its update is SimCLR's `classic_momentum=True` rule:
      `v ← m·v + lr·trust·(g + wd·w)`, `w ← w − v`, with `trust = η‖w‖ / ‖g + wd·w‖` for
      masked leaves and 1 elsewhere; the learning rate sits inside the momentum buffer, so a
      changed rate applies only to new gradients. Unmasked leaves get plain momentum SGD.
    - 'adam': Adam, or AdamW (decoupled decay `w ← w − lr·wd·w`) when `weight_decay > 0`.
    - 'sgd': momentum SGD with decay added to the gradient before momentum, as torch's SGD
      (`v ← m·v + g + wd·w`, `w ← w − lr·v`).

    With `clip_grad_norm`, gradients are first clipped to that global norm.
    `momentum` and `trust_coefficient` are ignored by Adam; `b1`, `b2`, `eps` only apply to it.
    """
    if weight_decay < 0:
        raise ValueError(f"weight_decay must be >= 0; got {weight_decay}")
    if clip_grad_norm is not None and clip_grad_norm <= 0:
        raise ValueError(f"clip_grad_norm must be > 0 or None; got {clip_grad_norm}")
    if name == "lars":
        tx = optax.lars(
            schedule,
            weight_decay=weight_decay,
            weight_decay_mask=decay_mask,
            trust_coefficient=trust_coefficient,
            trust_ratio_mask=decay_mask,
            momentum=momentum,
        )
    elif name == "adam":
        if weight_decay > 0:
            tx = optax.adamw(
                schedule, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay, mask=decay_mask
            )
        else:
            tx = optax.adam(schedule, b1=b1, b2=b2, eps=eps)
    elif name == "sgd":
        tx = optax.chain(
            optax.add_decayed_weights(weight_decay, mask=decay_mask),
            optax.sgd(schedule, momentum=momentum),
        )
    else:
        raise ValueError(f"unknown optimizer {name!r}; valid names are {OPTIMIZERS}")
    if clip_grad_norm is not None:
        tx = optax.chain(optax.clip_by_global_norm(clip_grad_norm), tx)
    return tx
