"""ResNet encoders, projection heads and the contrastive model: sizes, BN semantics, global BN."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.sharding import PartitionSpec as P

from img2imu_jax.models import (
    ContrastiveModel,
    ResNet,
    build_model,
    projection_head,
)
from img2imu_jax.models import resnet
from img2imu_jax.parallel import DATA_AXIS, data_mesh

# torchvision's resnet18/34/50/101 parameter counts minus `fc` (512·1000+1000 or 2048·1000+1000).
TORCHVISION_PARAMS = {18: 11_176_512, 34: 21_284_672, 50: 23_508_032, 101: 42_500_160}
SMALL = dict(depth=18, width=8, head="simclr", head_layers=2, out_features=16)


def _rngs(seed: int = 0) -> nnx.Rngs:
    """Rngs on the 'rbg' PRNG: threefry initialisers take seconds per kernel shape to compile on
    XLA:CPU, rbg a fraction of that; the tests only need the values to be random."""
    return nnx.Rngs(jax.random.key(seed, impl="rbg"))


def _param_count(module: nnx.Module) -> int:
    return sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(nnx.state(module, nnx.Param)))


def _images(seed: int, batch: int, height: int = 32, width: int = 32) -> jax.Array:
    return jax.random.uniform(jax.random.key(seed), (batch, height, width, 3))


@jax.jit
def _forward(graphdef, state, x):
    """One functional call; returns the outputs and the state with any updated batch stats."""
    model = nnx.merge(graphdef, state)
    return model(x), nnx.state(model)


def _train_mode(model: nnx.Module) -> nnx.Module:
    model.train()
    return model


@pytest.fixture(scope="module")
def small_model() -> ContrastiveModel:
    return build_model(**SMALL, rngs=_rngs())


@pytest.mark.parametrize("depth, features", [(18, 512), (34, 512), (50, 2048), (101, 2048)])
def test_parameter_counts_match_torchvision_without_fc(depth, features):
    model = nnx.eval_shape(lambda: ResNet(depth, rngs=nnx.Rngs(0)))
    assert _param_count(model) == TORCHVISION_PARAMS[depth]
    assert model.features == features


@pytest.mark.parametrize("depth, width, features", [(18, 64, 512), (50, 64, 2048), (50, 16, 512)])
def test_output_shape_at_96x128(depth, width, features):
    model = nnx.eval_shape(lambda: ResNet(depth, width=width, rngs=nnx.Rngs(0)))
    images = jax.ShapeDtypeStruct((2, 96, 128, 3), jnp.float32)
    out = nnx.eval_shape(lambda m, x: m(x), model, images)
    assert model.features == features
    assert out.shape == (2, features) and out.dtype == jnp.float32


def test_unknown_depth_and_head_are_value_errors():
    with pytest.raises(ValueError, match="depth"):
        ResNet(20, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="head"):
        build_model(depth=18, head="byol", rngs=nnx.Rngs(0))


def test_real_forward_shapes(small_model):
    graphdef, state = nnx.split(small_model)
    (features, projections), _ = _forward(graphdef, state, _images(0, 2, 96, 128))
    assert features.shape == (2, 64) and projections.shape == (2, 16)
    assert np.isfinite(np.asarray(projections)).all()


def test_conv_init_is_torchvision_kaiming_fan_out(small_model):
    kernel = np.asarray(small_model.encoder.layer4[1].conv2.kernel[...])
    fan_out = 3 * 3 * kernel.shape[-1]
    assert kernel.std() == pytest.approx(np.sqrt(2 / fan_out), rel=0.03)
    bn = small_model.encoder.layer4[1].bn2
    assert (np.asarray(bn.scale[...]) == 1).all() and (np.asarray(bn.bias[...]) == 0).all()


def test_train_mode_updates_running_stats_with_momentum_0_9(small_model):
    model = _train_mode(nnx.clone(small_model))
    graphdef, state = nnx.split(model)
    conv1 = model.encoder.conv1
    expected_mean, expected_var = np.zeros(8), np.ones(8)
    for seed in (1, 2):
        x = _images(seed, 8)
        _, state = _forward(graphdef, state, x)
        pre_bn = np.asarray(conv1(x), np.float64)
        expected_mean = 0.9 * expected_mean + 0.1 * pre_bn.mean(axis=(0, 1, 2))
        expected_var = 0.9 * expected_var + 0.1 * pre_bn.var(axis=(0, 1, 2))
        bn1 = state["encoder"]["bn1"]
        np.testing.assert_allclose(bn1["mean"][...], expected_mean, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(bn1["var"][...], expected_var, rtol=1e-5, atol=1e-6)


def test_eval_mode_uses_running_stats_so_outputs_ignore_the_batch(small_model):
    model = _train_mode(nnx.clone(small_model))
    graphdef, state = nnx.split(model)
    _, state = _forward(graphdef, state, _images(3, 8))  # non-trivial running statistics
    x = _images(4, 8)
    (_, train_all), _ = _forward(graphdef, state, x)
    (_, train_part), _ = _forward(graphdef, state, x[:4])
    assert not np.allclose(train_all[:4], train_part, atol=1e-3)

    model = nnx.merge(graphdef, state)
    model.eval()
    graphdef, state = nnx.split(model)
    (_, eval_all), after = _forward(graphdef, state, x)
    (_, eval_part), _ = _forward(graphdef, state, x[:4])
    np.testing.assert_allclose(eval_all[:4], eval_part, atol=1e-5)
    for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(after)):
        np.testing.assert_array_equal(a, b)


def _shard_mapped_train_step(model: nnx.Module, stats_spec: P):
    """Train-mode forward per device: replicated state in, batch split over 'data'.

    Under a `stats_spec` other than P() each device's BN stats come back stacked on a new
    leading axis, so per-device statistics can be inspected.
    """
    graphdef, state = nnx.split(_train_mode(model))

    def step(state, x):
        model = nnx.merge(graphdef, state)
        outputs = model(x)
        stats = nnx.state(model, nnx.BatchStat)
        if stats_spec != P():
            stats = jax.tree.map(lambda v: v[None], stats)
        return outputs, stats

    mapped = jax.shard_map(
        step, mesh=data_mesh(), in_specs=(P(), P(DATA_AXIS)), out_specs=(P(DATA_AXIS), stats_spec)
    )
    return jax.jit(mapped), state


def test_global_batch_norm_under_shard_map_equals_one_device_on_the_full_batch(small_model):
    assert jax.device_count() == 8
    x = _images(5, 16)
    reference = _train_mode(nnx.clone(small_model))
    ref_outputs, ref_state = _forward(*nnx.split(reference), x)
    ref_stats = nnx.state(nnx.merge(nnx.graphdef(reference), ref_state), nnx.BatchStat)

    synced = build_model(**SMALL, bn_axis_name=DATA_AXIS, rngs=_rngs())
    for a, b in zip(jax.tree.leaves(nnx.state(synced, nnx.Param)),
                    jax.tree.leaves(nnx.state(small_model, nnx.Param))):
        np.testing.assert_array_equal(a, b)
    step, state = _shard_mapped_train_step(synced, P())
    outputs, stats = step(state, x)
    # Stats agree to float32 rounding; outputs differ by ~2e-5 after 20 BatchNorms, each dividing
    # by a batch std whose reduction order differs (per device, then pmean). Per-device BN is
    # off by ~4 (below), five orders of magnitude more.
    for got, want in zip(outputs, ref_outputs):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    assert jax.tree.structure(stats) == jax.tree.structure(ref_stats)
    for got, want in zip(jax.tree.leaves(stats), jax.tree.leaves(ref_stats)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)

    # Without the axis name each device normalises its own 2 examples: the test can fail. Claiming
    # those per-device stats replicated is caught at trace time by shard_map's check_vma.
    step, state = _shard_mapped_train_step(nnx.clone(small_model), P())
    with pytest.raises(ValueError, match="replicat"):
        step(state, x)
    step, state = _shard_mapped_train_step(nnx.clone(small_model), P(DATA_AXIS))
    local_outputs, local_stats = step(state, x)
    assert np.abs(local_outputs[1] - ref_outputs[1]).max() > 0.1
    local_mean = np.asarray(local_stats["encoder"]["bn1"]["mean"][...])
    assert local_mean.shape == (8, 8)
    assert not np.allclose(local_mean, local_mean[0], atol=1e-4)
    np.testing.assert_allclose(local_mean.mean(axis=0), ref_stats["encoder"]["bn1"]["mean"][...],
                               rtol=1e-5, atol=1e-6)


def test_bfloat16_compute_keeps_float32_params_and_stats(small_model):
    model = _train_mode(build_model(**SMALL, dtype="bfloat16", rngs=_rngs()))
    params = jax.tree.leaves(nnx.state(model, nnx.Param))
    assert {p.dtype for p in params} == {jnp.dtype(jnp.float32)}

    @jax.jit
    def run(graphdef, state, x):
        model = nnx.merge(graphdef, state)
        encoded = model.encoder(x)
        return encoded, model(x), nnx.state(model, nnx.BatchStat)

    x = _images(6, 8)
    encoded, (features, projections), stats = run(*nnx.split(model), x)
    assert encoded.dtype == jnp.bfloat16
    assert features.dtype == projections.dtype == jnp.float32
    assert {s.dtype for s in jax.tree.leaves(stats)} == {jnp.dtype(jnp.float32)}

    # Precision in eval mode: train-mode BN over 8 tiny examples amplifies bf16 rounding ~10×.
    model.eval()
    reference = nnx.clone(small_model)
    reference.eval()
    (got, _), _ = _forward(*nnx.split(model), x)
    (want, _), _ = _forward(*nnx.split(reference), x)
    assert np.linalg.norm(got - want) < 0.03 * np.linalg.norm(want)


def test_simclr_head_layers_and_counts():
    head = projection_head("simclr", 16, hidden_features=32, out_features=8, layers=3, rngs=_rngs())
    shapes = [(lin.in_features, lin.out_features) for lin in head.linears]
    assert shapes == [(16, 32), (32, 32), (32, 8)]
    assert all(lin.bias is None for lin in head.linears)
    assert [n.bias is not None for n in head.norms] == [True, True, False]
    assert all(n.scale is not None for n in head.norms)
    # kernels 16·32 + 32·32 + 32·8; BN scale+bias 2·32 + 2·32; output BN scale only 8
    assert _param_count(head) == 512 + 1024 + 256 + 64 + 64 + 8
    head.train()
    assert head(jnp.ones((4, 16)) * jnp.arange(4.0)[:, None]).shape == (4, 8)

    r50 = nnx.eval_shape(lambda: projection_head("simclr", 2048, rngs=nnx.Rngs(0)))
    assert _param_count(r50) == 2 * (2048 * 2048 + 2 * 2048) + 2048 * 128 + 128


def test_mocov2_head_layers_and_counts():
    head = projection_head("mocov2", 16, hidden_features=32, out_features=8, rngs=_rngs())
    assert len(head.linears) == 2 and len(head.norms) == 0
    assert _param_count(head) == 16 * 32 + 32 + 32 * 8 + 8
    assert not jax.tree.leaves(nnx.state(head, nnx.BatchStat))
    assert head(jnp.ones((3, 16))).shape == (3, 8)

    r50 = nnx.eval_shape(lambda: projection_head("mocov2", 2048, rngs=nnx.Rngs(0)))
    assert [lin.out_features for lin in r50.linears] == [2048, 128]
    assert _param_count(r50) == 2048 * 2048 + 2048 + 2048 * 128 + 128


def test_contrastive_model_state_is_encoder_and_head(small_model):
    assert set(nnx.state(small_model).keys()) == {"encoder", "head"}
    assert small_model.head.linears[0].in_features == small_model.encoder.features == 64
    model = nnx.eval_shape(
        lambda: build_model(depth=50, head="mocov2", head_layers=2, hidden_features=0,
                            out_features=64, rngs=nnx.Rngs(0))
    )
    assert [lin.out_features for lin in model.head.linears] == [2048, 64]


def _bn_loss(bn_cls, axis_name=None):
    """A loss of one training-mode BatchNorm's output, as a function of (input, scale, bias)."""
    bn = bn_cls(6, axis_name=axis_name, rngs=nnx.Rngs(0))
    graphdef, params, stats = nnx.split(bn, nnx.Param, nnx.BatchStat)
    weights = jax.random.normal(jax.random.key(3), (6,))

    def loss(x, params):
        y = nnx.merge(graphdef, params, jax.tree.map(jnp.asarray, stats))(x)
        return jnp.sum(jnp.sin(y.astype(jnp.float32)) * weights)

    return loss, params


def test_memory_lean_batch_norm_matches_flax_values_and_gradients():
    from img2imu_jax.models.batchnorm import BatchNorm

    x = 3.0 + 2.0 * jax.random.normal(jax.random.key(1), (4, 5, 5, 6))
    ours, params = _bn_loss(BatchNorm)
    flax_loss, flax_params = _bn_loss(nnx.BatchNorm)
    params = jax.tree.map(lambda p: p + 0.3 * jnp.arange(6.0), params)  # scale ≠ 1, bias ≠ 0
    flax_params = jax.tree.map(lambda p: p + 0.3 * jnp.arange(6.0), flax_params)
    value, grads = jax.value_and_grad(ours, argnums=(0, 1))(x, params)
    expected, expected_grads = jax.value_and_grad(flax_loss, argnums=(0, 1))(x, flax_params)
    np.testing.assert_allclose(value, expected, rtol=1e-5)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5),
                 grads, expected_grads)


def test_memory_lean_batch_norm_per_device_gradients_match_flax_under_shard_map():
    from img2imu_jax.models.batchnorm import BatchNorm

    mesh = data_mesh()
    x = jax.random.normal(jax.random.key(2), (16, 3, 3, 6)) + 1.0

    def per_device_grads(bn_cls):
        loss, params = _bn_loss(bn_cls, axis_name=DATA_AXIS)
        grad = jax.grad(loss, argnums=(0, 1))
        return jax.jit(jax.shard_map(grad, mesh=mesh, in_specs=(P(DATA_AXIS), P()),
                                     out_specs=(P(DATA_AXIS), P(DATA_AXIS)),
                                     check_vma=False))(x, params)

    ours, expected = per_device_grads(BatchNorm), per_device_grads(nnx.BatchNorm)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5),
                 ours, expected)


def test_bfloat16_batch_norm_keeps_no_float32_activation_for_the_backward():
    from img2imu_jax.models.batchnorm import BatchNorm

    x = jax.random.normal(jax.random.key(1), (64, 16, 16, 32)).astype(jnp.bfloat16)

    def saved_bytes(bn_cls):
        bn = bn_cls(32, dtype=jnp.bfloat16, rngs=nnx.Rngs(0))
        graphdef, params, stats = nnx.split(bn, nnx.Param, nnx.BatchStat)

        def forward(x, params):
            net = nnx.merge(graphdef, params, jax.tree.map(jnp.asarray, stats))
            return jnp.sum(net(x).astype(jnp.float32) * jnp.arange(32.0))  # linear: saves no y

        residuals = jax.vjp(forward, x, params)[1]
        return sum(leaf.nbytes for leaf in jax.tree.leaves(residuals)
                   if hasattr(leaf, "nbytes") and leaf.size >= x.size)

    assert saved_bytes(BatchNorm) <= x.nbytes < saved_bytes(nnx.BatchNorm)


def test_stem_max_pool_paths_equal_numpy_pooling_with_minus_infinity_borders():
    """Both backends' stem pools (the TPU one called here on CPU) against numpy's 3×3/2 max over
    a −∞ border, values and gradients (each window's gradient lands on its maximum)."""
    x = np.abs(np.random.default_rng(0).normal(size=(2, 7, 10, 3))).astype(np.float32)
    padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), constant_values=-np.inf)
    windows = np.lib.stride_tricks.sliding_window_view(padded, (3, 3), axis=(1, 2))[:, ::2, ::2]
    expected = windows.max(axis=(-2, -1))
    weights = np.random.default_rng(1).normal(size=expected.shape).astype(np.float32)
    expected_grad = np.zeros_like(padded)
    for b, i, j, c in np.ndindex(*expected.shape):
        di, dj = np.unravel_index(windows[b, i, j, c].argmax(), (3, 3))
        expected_grad[b, 2 * i + di, 2 * j + dj, c] += weights[b, i, j, c]
    for pool in (resnet.max_pool_window_padded, resnet.max_pool_zero_padded,
                 resnet.stem_max_pool):
        np.testing.assert_array_equal(pool(jnp.asarray(x)), expected)
        grad = jax.grad(lambda v: (pool(v) * weights).sum())(jnp.asarray(x))
        np.testing.assert_allclose(grad, expected_grad[:, 1:-1, 1:-1], rtol=1e-6)
