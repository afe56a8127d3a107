"""NT-Xent, InfoNCE and the MoCo queue against float64 numpy references written from the formulas.

The multi-device tests run on the 8 fake CPU devices from conftest.py and check that the
per-device NT-Xent, averaged over the mesh, is the single-device loss on the global batch, in
value and in gradient, under `jax.shard_map` and `jax.pmap`.
"""

import collections

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax
from jax.sharding import PartitionSpec as P

from img2imu_jax import losses
from img2imu_jax.parallel import DATA_AXIS, batch_sharding, data_mesh

# Jitted once: op-by-op dispatch would make up most of this file's run time.
nt_xent = jax.jit(losses.nt_xent, static_argnames="axis_name")
info_nce = jax.jit(losses.info_nce)
enqueue = jax.jit(losses.enqueue, static_argnames="axis_name")


# ---- Independent references (float64 numpy, straight from the definitions).


def _unit(z):
    z = np.asarray(z, np.float64)
    return z / np.linalg.norm(z, axis=-1, keepdims=True)


def ref_nt_xent(z_a, z_b, temperature):
    """Mean over the 2N anchors of −log(e^{s(i,pos)} / Σ_{j≠i} e^{s(i,j)}), s = cosine / τ."""
    z = _unit(np.concatenate([z_a, z_b]))
    sim = z @ z.T / temperature
    two_n = len(z)
    losses, hits = [], []
    for i in range(two_n):
        pos = (i + two_n // 2) % two_n
        others = [j for j in range(two_n) if j != i]
        losses.append(np.log(np.sum(np.exp(sim[i, others]))) - sim[i, pos])
        hits.append(all(sim[i, pos] > sim[i, j] for j in others if j != pos))
    return np.mean(losses), np.mean(hits)


def ref_info_nce(q, k, queue, temperature):
    """Mean over queries of −log(e^{q·k/τ} / (e^{q·k/τ} + Σ_i e^{q·queue_i/τ}))."""
    q, k, queue = _unit(q), _unit(k), np.asarray(queue, np.float64)
    pos = np.sum(q * k, axis=1) / temperature
    neg = q @ queue.T / temperature
    loss = np.mean(np.log(np.exp(pos) + np.exp(neg).sum(axis=1)) - pos)
    return loss, np.mean(pos > neg.max(axis=1))


def numeric_grad(f, x, h=1e-6):
    """Central differences of a scalar float64 function."""
    x = np.asarray(x, np.float64)
    grad = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        step = np.zeros_like(x)
        step[idx] = h
        grad[idx] = (f(x + step) - f(x - step)) / (2 * h)
    return grad


def _views(rng, n, d, noise=0.5):
    """Two correlated views, unnormalised, so that top-1 is neither 0 nor 1."""
    z_a = rng.normal(size=(n, d)) * 3.0
    return z_a.astype(np.float32), (z_a + noise * 3.0 * rng.normal(size=(n, d))).astype(np.float32)


# ---- NT-Xent, one device.


@pytest.mark.parametrize("temperature", [0.05, 0.1, 0.5, 1.0])
def test_nt_xent_matches_reference(temperature):
    z_a, z_b = _views(np.random.default_rng(0), 8, 6, noise=1.0)
    loss, top1 = nt_xent(jnp.asarray(z_a), jnp.asarray(z_b), temperature)
    ref_loss, ref_top1 = ref_nt_xent(z_a, z_b, temperature)
    assert loss.dtype == jnp.float32
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-5)
    assert 0.0 < ref_top1 < 1.0
    assert float(top1) == pytest.approx(ref_top1)


def test_nt_xent_hand_computed_value():
    # Two images, identical one-hot views: s(pos) = 1/τ, the two negatives are orthogonal (0).
    temperature = 0.2
    z = jnp.eye(2, 3)
    loss, top1 = nt_xent(z, z, temperature)
    np.testing.assert_allclose(loss, np.log(np.exp(5.0) + 2.0) - 5.0, rtol=1e-6)
    assert float(top1) == 1.0


def test_nt_xent_gradient_matches_finite_differences():
    z_a, z_b = _views(np.random.default_rng(1), 3, 4)
    temperature = 0.3
    grad_a, grad_b = jax.grad(lambda a, b: nt_xent(a, b, temperature)[0], argnums=(0, 1))(
        jnp.asarray(z_a), jnp.asarray(z_b)
    )
    np.testing.assert_allclose(
        grad_a, numeric_grad(lambda a: ref_nt_xent(a, z_b, temperature)[0], z_a), atol=2e-6
    )
    np.testing.assert_allclose(
        grad_b, numeric_grad(lambda b: ref_nt_xent(z_a, b, temperature)[0], z_b), atol=2e-6
    )


def test_nt_xent_bf16_inputs_use_float32_math():
    z_a, z_b = _views(np.random.default_rng(2), 8, 16)
    a16, b16 = jnp.asarray(z_a, jnp.bfloat16), jnp.asarray(z_b, jnp.bfloat16)
    loss, top1 = nt_xent(a16, b16, 0.1)
    # The reference sees exactly the bf16-rounded inputs: any gap left is the loss's own math.
    ref_loss, ref_top1 = ref_nt_xent(np.asarray(a16, np.float64), np.asarray(b16, np.float64), 0.1)
    assert loss.dtype == jnp.float32
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-5)
    assert float(top1) == pytest.approx(ref_top1)
    grad = jax.grad(lambda a: nt_xent(a, b16, 0.1)[0])(a16)
    assert grad.dtype == jnp.bfloat16 and bool(jnp.all(jnp.isfinite(grad)))


def test_nt_xent_on_batch_sharded_global_arrays_under_jit():
    mesh = data_mesh()
    z_a, z_b = _views(np.random.default_rng(3), 16, 8)
    sharded = [jax.device_put(z, batch_sharding(mesh)) for z in (z_a, z_b)]
    loss, top1 = nt_xent(*sharded, 0.1)
    ref_loss, ref_top1 = ref_nt_xent(z_a, z_b, 0.1)
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-5)
    assert float(top1) == pytest.approx(ref_top1)


# ---- NT-Xent, per device, against the global batch on one device.

TEMPERATURE = 0.2


def _per_device_loss(w, x_a, x_b):
    """The per-device program: embed the local shard with `w`, NT-Xent with global negatives."""
    return losses.nt_xent(x_a @ w, x_b @ w, TEMPERATURE, axis_name=DATA_AXIS)


def _pmean_of_grads(w, x_a, x_b):
    """The pmap recipe: gradient of the local loss on each device, then pmean everything."""
    (loss, top1), grad = jax.value_and_grad(_per_device_loss, has_aux=True)(w, x_a, x_b)
    return lax.pmean((loss, top1, grad), DATA_AXIS)


def _grad_of_pmean(w, x_a, x_b):
    """The recipe for replicated params under `shard_map(check_vma=True)`: grad of the mean."""

    def mean_loss(w):
        loss, top1 = _per_device_loss(w, x_a, x_b)
        return lax.pmean(loss, DATA_AXIS), lax.pmean(top1, DATA_AXIS)

    (loss, top1), grad = jax.value_and_grad(mean_loss, has_aux=True)(w)
    return loss, top1, grad


def _run_shard_map(step, w, x_a, x_b, *, w_spec, check_vma):
    return jax.jit(jax.shard_map(
        step, mesh=data_mesh(), in_specs=(w_spec, P(DATA_AXIS), P(DATA_AXIS)), out_specs=P(),
        check_vma=check_vma,
    ))(w, x_a, x_b)


RECIPES = {
    "shard_map, replicated w, check_vma=False, pmean of grads": lambda w, a, b: _run_shard_map(
        _pmean_of_grads, w, a, b, w_spec=P(), check_vma=False
    ),
    "shard_map, per-device copies of w, pmean of grads": lambda w, a, b: _run_shard_map(
        lambda w, a, b: _pmean_of_grads(w[0], a, b),
        jnp.broadcast_to(w, (jax.device_count(), *w.shape)), a, b,
        w_spec=P(DATA_AXIS), check_vma=True,
    ),
    "shard_map, replicated w, check_vma=True, grad of pmean": lambda w, a, b: _run_shard_map(
        _grad_of_pmean, w, a, b, w_spec=P(), check_vma=True
    ),
    "pmap, pmean of grads": lambda w, a, b: jax.tree.map(
        lambda out: out[0],
        jax.pmap(_pmean_of_grads, axis_name=DATA_AXIS, in_axes=(None, 0, 0))(
            w, *(x.reshape(jax.device_count(), -1, x.shape[-1]) for x in (a, b))
        ),
    ),
}


@pytest.fixture(scope="module")
def global_problem():
    """A global batch of 16 images (2 per device), linear embedding w, and its reference values."""
    rng = np.random.default_rng(4)
    x_a, x_b = _views(rng, 16, 6)
    w = rng.normal(size=(6, 5)).astype(np.float32)

    def global_loss(w):
        return nt_xent(x_a @ w, x_b @ w, TEMPERATURE)

    (loss, top1), grad = jax.jit(jax.value_and_grad(global_loss, has_aux=True))(jnp.asarray(w))
    # The single-device function itself against the float64 reference, gradient included.
    ref_loss, ref_top1 = ref_nt_xent(x_a @ w, x_b @ w, TEMPERATURE)
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-5)
    assert float(top1) == pytest.approx(ref_top1) and 0.0 < ref_top1 < 1.0
    ref_grad = numeric_grad(lambda v: ref_nt_xent(x_a @ v, x_b @ v, TEMPERATURE)[0], w)
    np.testing.assert_allclose(grad, ref_grad, atol=1e-5)
    return w, x_a, x_b, (loss, top1, grad)


@pytest.mark.parametrize("recipe", list(RECIPES))
def test_per_device_nt_xent_equals_global_batch_loss(global_problem, recipe):
    w, x_a, x_b, (loss, top1, grad) = global_problem
    got_loss, got_top1, got_grad = RECIPES[recipe](jnp.asarray(w), x_a, x_b)
    np.testing.assert_allclose(got_loss, loss, rtol=1e-6)
    assert float(got_top1) == pytest.approx(float(top1))
    np.testing.assert_allclose(got_grad, grad, rtol=1e-5, atol=1e-6)


def test_shard_map_psums_gradients_of_replicated_params(global_problem):
    """Why the pmap recipe is wrong under `check_vma=True`: JAX already sums over devices.

    The gradient of a replicated input is psummed by the transpose of its implicit `pvary`, so
    the per-device gradient is the SUM of every device's local-loss gradient (device count ×
    the global gradient) and a further pmean leaves it so. If this ever fails, JAX changed
    that rule and the recipes in `nt_xent`'s docstring need another look.
    """
    w, x_a, x_b, (_, _, grad) = global_problem
    _, _, got = _run_shard_map(
        _pmean_of_grads, jnp.asarray(w), x_a, x_b, w_spec=P(), check_vma=True
    )
    np.testing.assert_allclose(got, jax.device_count() * grad, rtol=1e-5, atol=1e-5)


def test_per_device_loss_is_local_mean():
    """Each device returns its own anchors' mean; only their average is the global loss."""
    z_a, z_b = _views(np.random.default_rng(5), 16, 4)
    per_device = jax.jit(jax.shard_map(
        lambda a, b: jnp.stack(losses.nt_xent(a, b, 0.5, axis_name=DATA_AXIS))[None],
        mesh=data_mesh(), in_specs=(P(DATA_AXIS), P(DATA_AXIS)), out_specs=P(DATA_AXIS),
    ))(z_a, z_b)
    assert per_device.shape == (jax.device_count(), 2)
    assert float(jnp.std(per_device[:, 0])) > 1e-3
    np.testing.assert_allclose(per_device[:, 0].mean(), ref_nt_xent(z_a, z_b, 0.5)[0], rtol=1e-5)


# ---- InfoNCE.


def _queue(rng, size, d):
    return _unit(rng.normal(size=(size, d))).astype(np.float32)


@pytest.mark.parametrize("temperature", [0.07, 0.2, 1.0])
def test_info_nce_matches_reference(temperature):
    rng = np.random.default_rng(6)
    q, k = _views(rng, 8, 5, noise=0.8)
    queue = _queue(rng, 12, 5)
    loss, top1 = info_nce(jnp.asarray(q), jnp.asarray(k), jnp.asarray(queue), temperature)
    ref_loss, ref_top1 = ref_info_nce(q, k, queue, temperature)
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-5)
    assert 0.0 < ref_top1 < 1.0
    assert float(top1) == pytest.approx(ref_top1)


def test_info_nce_gradient_flows_only_into_queries():
    rng = np.random.default_rng(7)
    q, k = _views(rng, 3, 4)
    queue = _queue(rng, 5, 4)
    grad_q, grad_k, grad_queue = jax.grad(
        lambda q, k, queue: info_nce(q, k, queue, 0.2)[0], argnums=(0, 1, 2)
    )(jnp.asarray(q), jnp.asarray(k), jnp.asarray(queue))
    np.testing.assert_allclose(
        grad_q, numeric_grad(lambda v: ref_info_nce(v, k, queue, 0.2)[0], q), atol=2e-6
    )
    assert not np.any(grad_k) and not np.any(grad_queue)


def test_info_nce_bf16_inputs():
    rng = np.random.default_rng(8)
    q, k = (jnp.asarray(v, jnp.bfloat16) for v in _views(rng, 8, 16))
    queue = jnp.asarray(_queue(rng, 32, 16), jnp.bfloat16)
    loss, _ = info_nce(q, k, queue, 0.1)
    ref_loss, _ = ref_info_nce(*(np.asarray(v, np.float64) for v in (q, k, queue)), 0.1)
    assert loss.dtype == jnp.float32
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-5)


# ---- The MoCo queue.


def _check_ring(queue, ptr, expected: collections.deque):
    """`queue[ptr]` is the oldest entry: rolled to the front, the queue reads like the deque."""
    np.testing.assert_allclose(np.roll(np.asarray(queue), -int(ptr), axis=0), np.stack(expected),
                               rtol=1e-6, atol=1e-7)


def test_enqueue_is_a_ring_buffer_with_wrap_around():
    rng = np.random.default_rng(9)
    size, batch, d = 10, 4, 3
    queue0 = _queue(rng, size, d)
    expected = collections.deque(queue0, maxlen=size)
    queue, ptr = jnp.asarray(queue0), 0
    step = enqueue
    for i in range(6):  # 24 keys through 10 rows: wraps mid-batch (ptr 8 → rows 8, 9, 0, 1)
        keys = rng.normal(size=(batch, d)).astype(np.float32) * 5
        queue, ptr = step(queue, ptr, keys)
        expected.extend(_unit(keys))
        assert int(ptr) == (i + 1) * batch % size and ptr.dtype == jnp.int32
        _check_ring(queue, ptr, expected)


def test_enqueue_gathers_every_device_in_order():
    rng = np.random.default_rng(10)
    devices = jax.device_count()
    size, per_device, d = 12, 1, 3  # 8 keys a step into 12 rows: not a multiple, so it wraps
    queue0 = _queue(rng, size, d)
    expected = collections.deque(queue0, maxlen=size)
    sharded = jax.jit(jax.shard_map(
        lambda queue, ptr, keys: losses.enqueue(queue, ptr, keys, axis_name=DATA_AXIS),
        mesh=data_mesh(), in_specs=(P(), P(), P(DATA_AXIS)), out_specs=(P(), P()),
    ))
    pmapped = jax.pmap(
        lambda queue, ptr, keys: losses.enqueue(queue, ptr, keys, axis_name=DATA_AXIS),
        axis_name=DATA_AXIS, in_axes=(None, None, 0),
    )
    queue, ptr = jnp.asarray(queue0), jnp.int32(0)
    for step in range(4):
        keys = rng.normal(size=(devices * per_device, d)).astype(np.float32)
        if step == 2:  # pmap must give the same result on every device
            stacked_queue, stacked_ptr = pmapped(queue, ptr, keys.reshape(devices, per_device, d))
            assert bool(jnp.all(stacked_queue == stacked_queue[:1]))
            queue, ptr = stacked_queue[0], stacked_ptr[0]
        else:
            queue, ptr = sharded(queue, ptr, keys)
        expected.extend(_unit(keys))
        assert int(ptr) == (step + 1) * devices * per_device % size
        _check_ring(queue, ptr, expected)


def test_enqueue_keeps_dtype_and_blocks_gradients():
    queue = jnp.zeros((6, 2), jnp.bfloat16)
    keys = jnp.asarray([[3.0, 4.0], [0.0, -2.0]])
    new_queue, _ = enqueue(queue, 5, keys)
    assert new_queue.dtype == jnp.bfloat16
    np.testing.assert_allclose(new_queue[jnp.array([5, 0])].astype(jnp.float32),
                               [[0.6, 0.8], [0.0, -1.0]], atol=1e-2)
    grad = jax.grad(lambda k: jnp.sum(enqueue(queue.astype(jnp.float32), 0, k)[0]))(keys)
    assert not np.any(grad)


def test_enqueue_rejects_batch_larger_than_queue():
    with pytest.raises(ValueError, match="cannot enqueue 5 keys"):
        enqueue(jnp.zeros((4, 2)), 0, jnp.ones((5, 2)))


def test_negative_cosine_matches_reference_and_blocks_the_targets_gradient():
    rng = np.random.default_rng(5)
    p, z = rng.normal(size=(2, 12, 8)).astype(np.float32)
    expected = -np.mean(np.sum(_unit(p) * _unit(z), axis=1))
    np.testing.assert_allclose(jax.jit(losses.negative_cosine)(p, z), expected, rtol=1e-5)
    grad_p, grad_z = jax.grad(losses.negative_cosine, argnums=(0, 1))(p, z)
    assert np.abs(grad_p).max() > 1e-3 and not np.any(grad_z)


def test_simsiam_output_std_is_one_for_gaussian_outputs_and_zero_when_collapsed():
    from img2imu_jax.methods.simsiam import output_std

    on_one_device = jax.jit(jax.shard_map(output_std, mesh=data_mesh(), in_specs=P(DATA_AXIS),
                                          out_specs=P(), check_vma=False))
    gaussian = np.random.default_rng(6).normal(size=(4096, 64)).astype(np.float32)
    # √d × per-channel std of unit vectors spread like a Gaussian: 1 up to O(1/d).
    assert abs(float(on_one_device(gaussian)) - 1.0) < 0.02
    collapsed = np.tile(gaussian[:1], (4096, 1)) + 1e-4 * gaussian
    assert float(on_one_device(collapsed)) < 0.01


# ---- The sensor baselines' objectives.


def ref_cpc(predictions, targets):
    """CPC's InfoNCE written out with float64 loops: step k, prediction i against every latent."""
    p, z = np.asarray(predictions, np.float64), np.asarray(targets, np.float64)
    steps, n, _ = p.shape
    total, hits = 0.0, 0
    for k in range(steps):
        for i in range(n):
            scores = np.array([p[k, i] @ z[k, j] for j in range(n)])
            total -= scores[i] - np.log(np.sum(np.exp(scores)))
            hits += int(np.argmax(scores) == i)
    return total / (steps * n), hits / (steps * n)


def test_cpc_info_nce_matches_a_loop_over_steps_and_predictions():
    rng = np.random.default_rng(11)
    predictions = rng.normal(size=(3, 8, 5)).astype(np.float32)
    targets = (predictions + rng.normal(scale=1.5, size=(3, 8, 5))).astype(np.float32)
    loss, accuracy = jax.jit(losses.cpc_info_nce)(predictions, targets)
    ref_loss, ref_accuracy = ref_cpc(predictions, targets)
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-5)
    assert float(accuracy) == pytest.approx(ref_accuracy) and 0 < ref_accuracy < 1
    with pytest.raises(ValueError, match=r"\[steps, batch, dim\]"):
        losses.cpc_info_nce(predictions[0], targets[0])


def test_per_device_cpc_info_nce_scores_every_devices_latents():
    rng = np.random.default_rng(12)
    predictions = rng.normal(size=(2, 16, 4)).astype(np.float32)
    targets = (predictions + rng.normal(size=(2, 16, 4))).astype(np.float32)
    per_device = jax.jit(jax.shard_map(
        lambda p, z: jnp.stack(losses.cpc_info_nce(p, z, axis_name=DATA_AXIS))[None],
        mesh=data_mesh(), in_specs=(P(None, DATA_AXIS), P(None, DATA_AXIS)),
        out_specs=P(DATA_AXIS),
    ))(predictions, targets)
    ref_loss, ref_accuracy = ref_cpc(predictions, targets)
    np.testing.assert_allclose(per_device[:, 0].mean(), ref_loss, rtol=1e-5)
    np.testing.assert_allclose(per_device[:, 1].mean(), ref_accuracy, rtol=1e-6)


def test_binary_cross_entropies_match_the_formula_per_task():
    rng = np.random.default_rng(13)
    logits = rng.normal(scale=3, size=(10, 4)).astype(np.float32)
    labels = rng.integers(0, 2, size=(10, 4))
    probability = 1 / (1 + np.exp(-logits.astype(np.float64)))
    expected = -np.mean(labels * np.log(probability) + (1 - labels) * np.log(1 - probability),
                        axis=0)
    np.testing.assert_allclose(losses.binary_cross_entropies(logits, labels), expected,
                               rtol=1e-5)
    with pytest.raises(ValueError, match=r"\[examples, tasks\]"):
        losses.binary_cross_entropies(logits, labels[:, :3])
