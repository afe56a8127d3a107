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
