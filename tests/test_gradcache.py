"""GradCache: the chunked step's gradient equals jax.grad of the plain loss (SimCLR and MoCo)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from img2imu_jax import gradcache, losses
from img2imu_jax.models import projection_head

N, FEATURES, CHUNKS = 16, 12, 4


def _network(kind: str):
    """A BN MLP ('simclr') or a plain one ('mocov2') as `embed(params, stats, x)`."""
    head = projection_head(kind, FEATURES, out_features=8, hidden_features=16,
                           rngs=nnx.Rngs(0))
    graphdef, params, stats = nnx.split(head, nnx.Param, nnx.BatchStat)

    def embed(params, stats, x):
        net = nnx.merge(graphdef, params, jax.tree.map(jnp.asarray, stats))
        return net(x), nnx.state(net, nnx.BatchStat)

    return embed, params, stats


def _inputs(seed: int, n: int = N) -> jax.Array:
    return jax.random.normal(jax.random.key(seed), (n, FEATURES))


def _close(a, b):
    jax.tree.map(lambda x, y: np.testing.assert_allclose(
        x, y, rtol=1e-4, atol=1e-5 * float(np.abs(y).max())), a, b)


def test_simclr_gradient_equals_jax_grad_of_the_loss_of_per_chunk_embeddings():
    embed, params, stats = _network("simclr")
    view_a, view_b = _inputs(0), _inputs(1)

    def embed_views(params, stats, views):  # each chunk holds both views of its images
        a, b = views
        z, new_stats = embed(params, stats, jnp.concatenate([a, b]))
        return (z[: a.shape[0]], z[a.shape[0]:]), new_stats

    def nt_xent(z):
        return losses.nt_xent(*z, 0.2)

    (loss, top1, _), grads = jax.jit(lambda p: gradcache.value_and_grad(
        embed_views, nt_xent, p, stats, (view_a, view_b), CHUNKS))(params)

    def reference(params):  # ghost BatchNorm: every chunk of 4 images normalised on its own
        parts = [embed_views(params, stats, (view_a[i:i + 4], view_b[i:i + 4]))[0]
                 for i in range(0, N, 4)]
        return losses.nt_xent(jnp.concatenate([p[0] for p in parts]),
                              jnp.concatenate([p[1] for p in parts]), 0.2)[0]

    expected_loss, expected = jax.jit(jax.value_and_grad(reference))(params)
    np.testing.assert_allclose(loss, expected_loss, rtol=1e-5)
    _close(grads, expected)
    assert np.abs(jax.tree.leaves(grads)[0]).max() > 0


def test_moco_gradient_equals_jax_grad_of_the_unchunked_loss():
    embed, params, stats = _network("mocov2")  # no BatchNorm: chunking changes nothing
    queries, keys = _inputs(0), jax.random.normal(jax.random.key(2), (N, 8))
    queue = losses.l2_normalize(jax.random.normal(jax.random.key(3), (64, 8)))

    def info_nce(q):
        return losses.info_nce(q, keys, queue, 0.2)

    (loss, _, _), grads = jax.jit(lambda p: gradcache.value_and_grad(
        embed, info_nce, p, stats, queries, CHUNKS))(params)
    expected_loss, expected = jax.jit(jax.value_and_grad(
        lambda p: losses.info_nce(embed(p, stats, queries)[0], keys, queue, 0.2)[0]))(params)
    np.testing.assert_allclose(loss, expected_loss, rtol=1e-5)
    _close(grads, expected)


def test_running_statistics_take_one_update_with_the_batch_mean():
    embed, params, stats = _network("simclr")
    x = _inputs(4)
    (_, _, new_stats), _ = jax.jit(lambda p: gradcache.value_and_grad(
        embed, lambda z: (jnp.sum(z), None), p, stats, x, CHUNKS))(params)
    _, whole_batch = jax.jit(embed)(params, stats, x)
    # The first BatchNorm sees a linear map of the input: the chunks' means average to the
    # batch mean exactly, so its running mean matches the unchunked update.
    np.testing.assert_allclose(new_stats["norms"][0]["mean"][...],
                               whole_batch["norms"][0]["mean"][...], rtol=1e-5, atol=1e-7)


def test_a_batch_that_does_not_split_is_a_clear_error():
    embed, params, stats = _network("mocov2")
    with pytest.raises(ValueError, match="does not split into 3"):
        gradcache.value_and_grad(embed, lambda z: (jnp.sum(z), None), params, stats,
                                 _inputs(0), 3)


@pytest.mark.parametrize("name", ["moco"])  # SimCLR's wiring passes too (+35 s, left out)
def test_grad_chunks_through_the_method_equal_autodiff_when_chunks_repeat_the_batch(name):
    """Two chunks holding the same images have exactly the whole batch's BatchNorm moments, so
    `config.grad_chunks=2` must give the loss, gradient and statistics of plain autodiff."""
    import optax
    from jax.sharding import PartitionSpec

    from img2imu_jax.config import RECIPES, load_config
    from img2imu_jax.methods import get_method
    from img2imu_jax.pretrain import initial_state

    overrides = ["model.width=8", "data.image_size=(16,16)", "batch_size=8",
                 "moco.queue_size=64", "moco.bn_group_size=4", f"method={name}"]
    plain = get_method(load_config(RECIPES / "demo.py", overrides))
    chunked = get_method(load_config(RECIPES / "demo.py", overrides + ["grad_chunks=2"]))
    state = jax.jit(lambda: initial_state(plain.config, plain, optax.sgd(0.1)))()
    params, stats = nnx.split_state(state["model"], nnx.Param, nnx.BatchStat)
    extra = {k: v for k, v in state["train"].items() if k not in ("step", "key")}
    rng = np.random.default_rng(0)
    half_a, half_b = rng.normal(size=(2, 4, 16, 16, 3)).astype(np.float32)
    views = np.concatenate([half_a, half_a]), np.concatenate([half_b, half_b])
    mesh = jax.make_mesh((1,), ("data",), devices=jax.devices()[:1],
                         axis_types=(jax.sharding.AxisType.Auto,))

    def run(method):
        def per_device(a, b, params, stats, extra):
            (loss, _, _, new_stats), grads = method.value_and_grad(params, stats, a, b, extra,
                                                                   jax.random.key(1))
            return loss, grads, new_stats
        return jax.jit(jax.shard_map(per_device, mesh=mesh, in_specs=(PartitionSpec(),) * 5,
                                     out_specs=PartitionSpec(), check_vma=False))(
            *views, params, stats, extra)

    (loss, grads, new_stats), (expected_loss, expected, expected_stats) = run(chunked), run(plain)
    np.testing.assert_allclose(loss, expected_loss, rtol=1e-5)
    # Convolutions and BatchNorm over 8 images leave float32 rounding of ~1e-4 of a leaf's
    # largest entry (measured); a wrong chunk gradient is off by its whole size.
    jax.tree.map(lambda x, y: np.testing.assert_allclose(
        x, y, rtol=1e-3, atol=1e-3 * float(np.abs(y).max())), grads, expected)
    _close(new_stats, expected_stats)
    assert max(float(np.abs(g).max()) for g in jax.tree.leaves(grads)) > 0


def test_grad_chunks_that_do_not_divide_the_batch_or_a_method_without_them_are_errors():
    from img2imu_jax.config import RECIPES, load_config
    from img2imu_jax.pretrain import setup

    mesh = jax.make_mesh((1,), ("data",), devices=jax.devices()[:1],
                         axis_types=(jax.sharding.AxisType.Auto,))
    for overrides, message in [(["batch_size=8", "grad_chunks=3"], "must divide"),
                               (["method=simsiam", "grad_chunks=2"], "does not support")]:
        config = load_config(RECIPES / "demo.py", overrides)
        with pytest.raises(ValueError, match=message):
            setup(config, mesh, steps_per_epoch=1, total_steps=1)
