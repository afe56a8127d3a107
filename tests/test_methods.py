"""Methods as plug-ins and MoCo's Shuffle BN: keys use exactly their shuffled group's
BatchNorm statistics, on 8 devices as on one; SimSiam's recipe builds its predictor."""

from __future__ import annotations


import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.sharding import PartitionSpec

from img2imu_jax import shuffle_bn
from img2imu_jax.shuffle_bn import apply_global, apply_in_groups, apply_shuffled, shuffle_order
from img2imu_jax.config import load_config
from img2imu_jax.methods import METHODS, build, get_method
from img2imu_jax.parallel import data_mesh

from img2imu_jax.config import RECIPES as CONFIGS
TINY = ["model.width=8", "data.image_size=(16,16)", "batch_size=32", "moco.queue_size=64"]
GROUP = 4


def one_device_mesh():
    return jax.make_mesh((1,), ("data",), devices=jax.devices()[:1],
                         axis_types=(jax.sharding.AxisType.Auto,))


def run_per_device(fn, mesh, images, *rest):
    """`fn(images_shard, *rest)` under shard_map; outputs come back concatenated on 'data'."""
    mapped = jax.shard_map(fn, mesh=mesh, in_specs=(PartitionSpec("data"),) + (PartitionSpec(),)
                           * len(rest), out_specs=(PartitionSpec("data"), PartitionSpec()),
                           check_vma=False)
    return jax.device_get(jax.jit(mapped)(images, *rest))


def by_hand_in_train_mode(model, images):
    """One BatchNorm batch, run by hand: a copy of the model in train mode on `images`."""
    net = nnx.clone(model)
    net.train()
    projections = net(jnp.asarray(images))[1]
    return np.asarray(projections), jax.device_get(nnx.state(net, nnx.BatchStat))


@pytest.fixture(scope="module")
def tiny():
    config = load_config(CONFIGS / "demo.py", TINY)
    # Per-call statistics: what each group sees. Built under jit: one compile, not one per op.
    model = nnx.jit(lambda: build(config, bn_axis_name=None))()
    images = np.random.default_rng(0).normal(size=(32, 16, 16, 3)).astype(np.float32)
    return model, nnx.graphdef(model), images


def test_each_key_uses_exactly_its_shuffled_groups_statistics_on_eight_devices_as_on_one(tiny):
    model, graphdef, images = tiny
    params, stats = nnx.split_state(nnx.state(model), nnx.Param, nnx.BatchStat)
    key = jax.random.key(3)
    order = np.asarray(shuffle_order(key, len(images)))
    expected = np.zeros((len(images), 64), np.float32)
    group_stats = []
    for start in range(0, len(images), GROUP):
        members = order[start:start + GROUP]
        expected[members], new_stats = by_hand_in_train_mode(model, images[members])
        group_stats.append(new_stats)
    expected_stats = jax.tree.map(lambda *s: np.mean(s, axis=0), *group_stats)

    def keys(shard, params, stats):
        return apply_shuffled(graphdef, params, stats, shard, lambda net, x: net(x)[1], GROUP,
                              key)

    for mesh in (data_mesh(), one_device_mesh()):
        got, got_stats = run_per_device(keys, mesh, images, params, stats)
        # BatchNorm over 4 examples amplifies float32 rounding to ~2e-4 here.
        np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-3)
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5),
                     got_stats, expected_stats)
    # Whole-batch statistics give other keys: the groups are what the test measures.
    whole, _ = by_hand_in_train_mode(model, images)
    assert np.abs(whole - expected).max() > 1e-2


def test_shuffle_row_moves_on_every_backend_equal_numpy_indexing_exactly():
    """The TPU forms (one-hot matmuls, called here on CPU) and the gathers against numpy."""
    rng = np.random.default_rng(0)
    order = rng.permutation(12)
    own = np.arange(4, 8)
    for dtype in (jnp.float32, jnp.bfloat16):
        values = jnp.asarray(rng.normal(size=(12, 3, 5)) * 1e3, dtype)
        expected_rows = np.asarray(values)[order[own]]
        expected_own = np.asarray(values)[np.argsort(order)[own]]
        for take, of_examples in ((shuffle_bn.take_rows_tpu, shuffle_bn.rows_of_examples_tpu),
                                  (shuffle_bn.take_rows, shuffle_bn.rows_of_examples)):
            np.testing.assert_array_equal(take(values, jnp.asarray(order[own])), expected_rows)
            np.testing.assert_array_equal(
                of_examples(values, jnp.asarray(order), jnp.asarray(own)), expected_own)


def test_grouped_queries_use_consecutive_groups_and_global_bn_the_whole_batch(tiny):
    model, graphdef, images = tiny
    params, stats = nnx.split_state(nnx.state(model), nnx.Param, nnx.BatchStat)
    expected = np.concatenate([by_hand_in_train_mode(model, images[i:i + GROUP])[0]
                               for i in range(0, len(images), GROUP)])
    project = lambda net, x: net(x)[1]  # noqa: E731
    got, _ = run_per_device(
        lambda shard, p, s: apply_in_groups(graphdef, p, s, shard, project, GROUP),
        data_mesh(), images, params, stats)
    np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-3)
    global_graphdef = nnx.graphdef(nnx.eval_shape(lambda: build(load_config(CONFIGS / "demo.py",
                                                                           TINY))))
    got, _ = run_per_device(
        lambda shard, p, s: apply_global(global_graphdef, p, s, shard, project),
        data_mesh(), images, params, stats)
    np.testing.assert_allclose(got, by_hand_in_train_mode(model, images)[0], rtol=1e-4,
                               atol=1e-5)


def test_simsiam_recipe_builds_a_predictor_and_unknown_methods_list_the_known_ones():
    config = load_config(CONFIGS / "simsiam.py", ["model.width=8"])
    method = get_method(config)
    state = nnx.state(nnx.eval_shape(method.build))
    assert set(state) == {"encoder", "head", "predictor"}
    assert state["predictor"]["reduce"]["kernel"].get_value().shape == (2048, 512)
    assert METHODS == ("cpc_1d", "moco", "multitask_1d", "simclr", "simclr_1d", "simsiam")
    with pytest.raises(ValueError, match="method must be one of cpc_1d, moco, multitask_1d, "
                                         "simclr, simclr_1d, simsiam; got 'byol'"):
        load_config(CONFIGS / "demo.py", ["method=byol"])
