"""GradCache (Gao et al., 2021): a contrastive loss over a large batch with the memory of 1/K of it.

A contrastive loss couples every embedding of the (global) batch, so the batch cannot simply be
split into micro-batches whose gradients add up. GradCache splits the encoder instead:

1. embed the batch in K chunks without keeping activations (`lax.map`, no autodiff);
2. take the loss and its gradient with respect to the embeddings (cheap: `[N, d]`);
3. re-run each chunk with autodiff and pull that chunk's embedding gradient back to the
   parameters (`jax.vjp` inside a `lax.scan`, so one chunk's activations live at a time).

The parameter gradient is exactly that of the loss of the concatenated chunk embeddings, at
the cost of one extra forward pass. The loss may gather embeddings over a device axis (NT-Xent
with `axis_name`): it runs once, on all chunks, in step 2.

BatchNorm: each chunk is normalised with its own statistics ("ghost BatchNorm", as when the
same chunks run on separate devices with local BN), so the gradient equals the unchunked one
where the statistics do not depend on the batch split, and otherwise that of the loss of the
concatenated per-chunk embeddings (tests/test_gradcache.py checks both against `jax.grad`).
Every chunk starts from the same running statistics and the returned ones are their mean over
chunks: one momentum update with the chunks' mean moments (the batch mean, exactly, and the
mean within-chunk variance).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

PyTree = Any
EmbedFn = Callable[[PyTree, PyTree, PyTree], tuple[PyTree, PyTree]]
LossFn = Callable[[PyTree], tuple[jax.Array, PyTree]]


def value_and_grad(
    embed: EmbedFn, loss: LossFn, params: PyTree, batch_stats: PyTree, inputs: PyTree,
    chunks: int,
) -> tuple[tuple[jax.Array, PyTree, PyTree], PyTree]:
    """`((loss, aux, new batch_stats), d loss / d params)` with the encoder run in `chunks` parts.

    `embed(params, batch_stats, inputs) -> (embeddings, new batch_stats)` is the per-example
    encoder; every leaf of `inputs` and of `embeddings` has the example axis first, and
    `inputs` is split into `chunks` equal parts along it. `loss(embeddings) -> (loss, aux)` sees
    the embeddings of all chunks, concatenated in order.
    """
    split = jax.tree.map(lambda x: _split(x, chunks), inputs)

    def embed_chunk(chunk):
        return embed(params, batch_stats, chunk)

    embedded, stats = jax.lax.map(embed_chunk, split)
    embeddings = jax.tree.map(_merge, embedded)
    (value, aux), d_embeddings = jax.value_and_grad(loss, has_aux=True)(embeddings)
    d_split = jax.tree.map(lambda g: _split(g, chunks), d_embeddings)

    def backward_chunk(total, chunk_and_grad):
        chunk, d_chunk = chunk_and_grad
        _, pullback = jax.vjp(lambda p: embed(p, batch_stats, chunk)[0], params)
        return jax.tree.map(jnp.add, total, pullback(d_chunk)[0]), None

    zeros = jax.tree.map(jnp.zeros_like, params)
    grads, _ = jax.lax.scan(backward_chunk, zeros, (split, d_split))
    new_stats = jax.tree.map(lambda s: s.mean(axis=0).astype(s.dtype), stats)
    return (value, aux, new_stats), grads


def _split(x: jax.Array, chunks: int) -> jax.Array:
    if x.shape[0] % chunks:
        raise ValueError(f"a batch of {x.shape[0]} does not split into {chunks} equal chunks")
    return x.reshape(chunks, x.shape[0] // chunks, *x.shape[1:])


def _merge(x: jax.Array) -> jax.Array:
    return x.reshape(x.shape[0] * x.shape[1], *x.shape[2:])
