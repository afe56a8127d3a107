"""Schedules against hand-computed values; LARS, Adam and SGD steps against numpy versions."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from img2imu_jax.optim import OPTIMIZERS, decay_mask, learning_rate_schedule, make_optimizer

# ---- Schedules.

# base_lr 0.3, reference batch 256, 10 warm-up steps, 110 in all, ending at 10% of the peak.
# Step 35 is a quarter into the cosine: 0.1 + 0.9 · ½(1 + cos π/4) = 0.868198 of the peak;
# step 60 is halfway: 0.1 + 0.9 · ½ = 0.55 of the peak.
STEPS = [0, 5, 10, 35, 60, 110, 500]
SCHEDULES = [
    ("linear", 512, [0.0, 0.3, 0.6, 0.520919, 0.33, 0.06, 0.06]),  # peak 0.3 · 512/256
    ("sqrt", 1024, [0.0, 0.3, 0.6, 0.520919, 0.33, 0.06, 0.06]),  # peak 0.3 · √(1024/256)
    ("sqrt", 512, [0.0, 0.212132, 0.424264, 0.368345, 0.233345, 0.042426, 0.042426]),
    ("none", 4096, [0.0, 0.15, 0.3, 0.260459, 0.165, 0.03, 0.03]),
]


@pytest.mark.parametrize(("scaling", "batch_size", "expected"), SCHEDULES)
def test_schedule_values(scaling, batch_size, expected):
    schedule = learning_rate_schedule(
        0.3, batch_size=batch_size, scaling=scaling, warmup_steps=10, total_steps=110,
        end_lr_fraction=0.1,
    )
    got = [float(schedule(step)) for step in STEPS]
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)


def test_schedule_without_warmup_starts_at_peak_and_ends_at_zero():
    schedule = learning_rate_schedule(
        0.1, batch_size=256, reference_batch=128, warmup_steps=0, total_steps=100
    )
    np.testing.assert_allclose([schedule(0), schedule(50), schedule(100)], [0.2, 0.1, 0.0],
                               atol=1e-7)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(warmup_steps=20, total_steps=10), "warmup_steps < total_steps"),
        (dict(warmup_steps=10, total_steps=10), "warmup_steps < total_steps"),
        (dict(warmup_steps=-1), "warmup_steps"),
        (dict(total_steps=0), "total_steps must be >= 1"),
        (dict(scaling="log"), "scaling must be one of"),
        (dict(batch_size=0), "batch_size and reference_batch"),
        (dict(reference_batch=0), "batch_size and reference_batch"),
        (dict(base_lr=-1.0), "base_lr"),
        (dict(end_lr_fraction=1.5), "end_lr_fraction"),
    ],
)
def test_schedule_rejects_bad_arguments(kwargs, message):
    args = dict(base_lr=0.1, batch_size=256, warmup_steps=1, total_steps=10) | kwargs
    with pytest.raises(ValueError, match=message):
        learning_rate_schedule(args.pop("base_lr"), **args)


# ---- The decay mask.


def test_decay_mask_on_a_pytree():
    params = {"kernel": np.ones((3, 4)), "conv": np.ones((3, 3, 2, 4)), "bias": np.ones(4),
              "scalar": np.float32(1.0)}
    assert decay_mask(params) == {"kernel": True, "conv": True, "bias": False, "scalar": False}


class _TinyResNet(nnx.Module):
    def __init__(self, rngs: nnx.Rngs):
        self.conv = nnx.Conv(3, 4, (3, 3), use_bias=False, rngs=rngs)
        self.bn = nnx.BatchNorm(4, rngs=rngs)
        self.head = nnx.Linear(4, 2, rngs=rngs)


def test_decay_mask_on_nnx_state():
    params = nnx.state(_TinyResNet(nnx.Rngs(0)), nnx.Param)
    mask = {"/".join(map(str, path)): value
            for path, value in jax.tree_util.tree_flatten_with_path(decay_mask(params))[0]}
    kernels = {name: value for name, value in mask.items() if "kernel" in name}
    others = {name: value for name, value in mask.items() if "kernel" not in name}
    assert len(kernels) == 2 and all(kernels.values())
    assert len(others) == 3 and not any(others.values())  # bn scale, bn bias, head bias


# ---- LARS.

LRS = [0.1, 0.5, 0.2]  # a changing rate shows where the rate sits relative to momentum


def _by_step(values):
    return lambda count: jnp.asarray(values)[count]


def _lars_problem():
    rng = np.random.default_rng(0)
    params = {"dense": {"kernel": rng.normal(size=(3, 4)), "bias": rng.normal(size=4)},
              "bn_scale": 1.0 + 0.1 * rng.normal(size=4)}
    grads = [jax.tree.map(lambda p: rng.normal(size=p.shape), params) for _ in LRS]
    return params, grads


def numpy_lars(params, grads, lrs, *, wd, eta, momentum, rate_inside_momentum):
    """SimCLR's LARS for the kernel, plain momentum SGD for 1-D leaves.

    rate_inside_momentum=True is SimCLR's `classic_momentum`: v ← m·v + lr·trust·d, w ← w − v.
    False is the torch-style alternative: v ← m·v + trust·d, w ← w − lr·v.
    """
    flat = {"kernel": params["dense"]["kernel"], "bias": params["dense"]["bias"],
            "bn_scale": params["bn_scale"]}
    velocity = {name: np.zeros_like(w) for name, w in flat.items()}
    for step_grads, lr in zip(grads, lrs):
        g = {"kernel": step_grads["dense"]["kernel"], "bias": step_grads["dense"]["bias"],
             "bn_scale": step_grads["bn_scale"]}
        for name, w in flat.items():
            d, trust = g[name], 1.0
            if name == "kernel":
                d = d + wd * w
                trust = eta * np.linalg.norm(w) / np.linalg.norm(d)
            if rate_inside_momentum:
                velocity[name] = momentum * velocity[name] + lr * trust * d
                flat[name] = w - velocity[name]
            else:
                velocity[name] = momentum * velocity[name] + trust * d
                flat[name] = w - lr * velocity[name]
    return flat


def _run(tx, params, grads):
    params = jax.tree.map(lambda p: jnp.asarray(p, jnp.float32), params)
    state = tx.init(params)
    for g in grads:
        updates, state = tx.update(jax.tree.map(jnp.float32, g), state, params)
        params = optax.apply_updates(params, updates)
    return params


def test_lars_matches_simclr_classic_momentum_with_masked_1d_params():
    params, grads = _lars_problem()
    settings = dict(wd=0.05, eta=0.01, momentum=0.9)
    tx = make_optimizer("lars", _by_step(LRS), weight_decay=settings["wd"],
                        trust_coefficient=settings["eta"], momentum=settings["momentum"])
    got = _run(tx, params, grads)
    want = numpy_lars(params, grads, LRS, rate_inside_momentum=True, **settings)
    np.testing.assert_allclose(got["dense"]["kernel"], want["kernel"], rtol=1e-5)
    np.testing.assert_allclose(got["dense"]["bias"], want["bias"], rtol=1e-5)
    np.testing.assert_allclose(got["bn_scale"], want["bn_scale"], rtol=1e-5)
    # The torch-style placement (rate outside the buffer) gives a measurably different result.
    other = numpy_lars(params, grads, LRS, rate_inside_momentum=False, **settings)
    assert np.max(np.abs(other["bias"] - want["bias"])) > 1e-2
    assert np.max(np.abs(other["kernel"] - want["kernel"])) > 1e-4


def test_lars_on_nnx_state_leaves_1d_params_unadapted():
    params = nnx.state(_TinyResNet(nnx.Rngs(0)), nnx.Param)
    grads = jax.tree.map(jnp.ones_like, params)
    tx = make_optimizer("lars", 0.1, weight_decay=1e-4)
    updates, _ = tx.update(grads, tx.init(params), params)
    np.testing.assert_allclose(updates["bn"]["scale"].get_value(), -0.1)  # −lr·g, nothing else
    np.testing.assert_allclose(updates["head"]["bias"].get_value(), -0.1)
    kernel = params["head"]["kernel"].get_value()
    d = 1.0 + 1e-4 * kernel
    trust = 0.001 * np.linalg.norm(kernel) / np.linalg.norm(d)
    np.testing.assert_allclose(updates["head"]["kernel"].get_value(), -0.1 * trust * d, rtol=1e-5)


# ---- Adam and SGD.


def _problem():
    rng = np.random.default_rng(1)
    params = {"kernel": rng.normal(size=(3, 4)), "bias": rng.normal(size=4)}
    grads = [jax.tree.map(lambda p: rng.normal(size=p.shape), params) for _ in range(2)]
    return params, grads


@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
def test_adam_matches_numpy(weight_decay):
    params, grads = _problem()
    lr, b1, b2, eps = 0.01, 0.8, 0.99, 1e-6
    want = {}
    for name, w in params.items():
        m = v = 0.0
        for t, step_grads in enumerate(grads, start=1):
            g = step_grads[name]
            m = b1 * m + (1 - b1) * g
            v = b2 * v + (1 - b2) * g * g
            update = (m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + eps)
            decay = weight_decay * w if name == "kernel" else 0.0  # decoupled, kernels only
            w = w - lr * (update + decay)
        want[name] = w
    tx = make_optimizer("adam", lr, weight_decay=weight_decay, b1=b1, b2=b2, eps=eps)
    got = _run(tx, params, grads)
    for name in params:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("clip", [None, 0.5])
def test_sgd_matches_torch_style_coupled_decay(clip):
    params, grads = _problem()
    lr, wd, momentum = 0.1, 0.05, 0.9
    want = dict(params)
    velocity = {name: 0.0 for name in params}
    for step_grads in grads:
        scale = 1.0
        if clip is not None:
            norm = np.sqrt(sum(np.sum(g * g) for g in step_grads.values()))
            scale = min(1.0, clip / norm)
        for name, w in want.items():
            d = scale * step_grads[name] + (wd * w if name == "kernel" else 0.0)
            velocity[name] = momentum * velocity[name] + d
            want[name] = w - lr * velocity[name]
    tx = make_optimizer("sgd", lr, weight_decay=wd, momentum=momentum, clip_grad_norm=clip)
    got = _run(tx, params, grads)
    for name in params:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-5, atol=1e-7)


def test_unknown_optimizer_lists_the_valid_names():
    with pytest.raises(ValueError, match="valid names are") as error:
        make_optimizer("adagrad", 0.1)
    assert all(name in str(error.value) for name in OPTIMIZERS)


@pytest.mark.parametrize(("kwargs", "message"), [(dict(weight_decay=-1.0), "weight_decay"),
                                                 (dict(clip_grad_norm=0.0), "clip_grad_norm")])
def test_make_optimizer_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        make_optimizer("sgd", 0.1, **kwargs)
