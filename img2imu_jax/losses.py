"""Pre-training objectives: SimCLR's NT-Xent (negatives from every device), MoCo's InfoNCE,
SimSiam's negative cosine, and for the sensor baselines CPC's InfoNCE over future steps and the
multi-task binary cross-entropies.

All similarity math runs in float32 on L2-normalised embeddings, whatever dtype the encoder
computed in: with τ ≈ 0.1 a bf16 cosine similarity would be off by several hundredths of a logit.

Two ways to get global negatives for NT-Xent (docs: anchors.md §A3.1):

- under `jax.jit` on batch-sharded global arrays, call `nt_xent(z_a, z_b, τ)` on the whole
  batch and XLA inserts the gathers;
- inside `jax.shard_map` (or `jax.pmap`), call `nt_xent(..., axis_name=DATA_AXIS)` on the local
  shard; it gathers the embeddings itself (see its docstring for how to average).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax
from jax import lax

from img2imu_jax.parallel import all_gather, spans_devices

# Subtracted from self-similarity logits (SimCLR's LARGE_NUM): exp() underflows to exactly 0,
# and unlike -inf it cannot turn into NaN in the softmax's backward pass.
LARGE_NUM = 1e9
# torch.nn.functional.normalize's floor on the norm; keeps an all-zero embedding finite.
_NORM_EPS = 1e-12


def l2_normalize(z: jax.Array) -> jax.Array:
    """Rows of `z` scaled to unit L2 norm, in float32 whatever the input dtype."""
    z = z.astype(jnp.float32)
    squared = jnp.sum(z * z, axis=-1, keepdims=True)
    return z * lax.rsqrt(jnp.maximum(squared, _NORM_EPS**2))


def _similarity(a: jax.Array, b: jax.Array) -> jax.Array:
    """`a @ b.T` at full float32 precision (TPUs otherwise round matmul inputs to bf16)."""
    return jnp.matmul(a, b.T, precision=lax.Precision.HIGHEST)


def nt_xent(
    z_a: jax.Array,
    z_b: jax.Array,
    temperature: float | jax.Array,
    *,
    axis_name: str | None = None,
) -> tuple[jax.Array, jax.Array]:
    """SimCLR's NT-Xent over the 2N views `z_a`, `z_b` (`[N, d]`, row i of each = one image).

    Every view is an anchor: its positive is the other view of its image, its negatives the
    2N − 2 other views (its own self-similarity is masked out). The loss is the cross-entropy
    averaged over all 2N anchors, as in the paper's definition (SimCLR's TF code reports the sum
    of its two per-view means, twice this value). Returns `(loss, top1)`, top1 being the
    fraction of anchors whose positive has the highest logit.

    With `axis_name`, this is the per-device program inside `jax.shard_map`/`jax.pmap`: `z_a`,
    `z_b` are this device's `[n, d]` rows of the global batch (devices in axis order). Both views
    are gathered from every device, so negatives come from the whole global batch, and the
    returned loss and top1 are means over the 2n LOCAL anchors only; the caller averages them
    over the axis (`lax.pmean`). Because `all_gather` transposes to a reduce-scatter, the
    per-device gradient of this local loss already carries every device's contribution to its
    embeddings, so where each device differentiates its own copy of the parameters (`pmap`, or
    `shard_map` with `check_vma=False`) `lax.pmean` of the per-device gradients is exactly the
    gradient of the global loss. Under `shard_map` with `check_vma=True` (the default) and
    replicated parameters (`in_specs=P()`), JAX already psums the gradient of a replicated
    input, so that recipe gives device-count × the global gradient; there, differentiate
    `lax.pmean(loss, axis_name)` instead, which gives the global gradient with no further pmean.
    """
    if z_a.ndim != 2 or z_a.shape != z_b.shape:
        raise ValueError(
            f"z_a and z_b must both be [batch, dim] with equal shapes; got {z_a.shape}, {z_b.shape}"
        )
    a, b = l2_normalize(z_a), l2_normalize(z_b)
    n = a.shape[0]
    if axis_name is None:
        keys_a, keys_b, offset = a, b, 0
    else:
        keys_a, keys_b = all_gather(a, axis_name), all_gather(b, axis_name)
        offset = lax.axis_index(axis_name) * n
    global_n = keys_a.shape[0]

    logits = _similarity(jnp.concatenate([a, b]), jnp.concatenate([keys_a, keys_b]))
    logits = logits / temperature
    # Global column of each local anchor (a-views first, then b-views) and of its positive.
    rows = offset + jnp.arange(n)
    self_col = jnp.concatenate([rows, rows + global_n])
    positive_col = jnp.concatenate([rows + global_n, rows])
    is_self = jnp.arange(2 * global_n)[None, :] == self_col[:, None]
    logits = jnp.where(is_self, -LARGE_NUM, logits)

    log_prob = jax.nn.log_softmax(logits, axis=-1)
    loss = -jnp.mean(jnp.take_along_axis(log_prob, positive_col[:, None], axis=-1))
    top1 = jnp.mean(jnp.argmax(logits, axis=-1) == positive_col)
    return loss, top1


def info_nce(
    q: jax.Array, k: jax.Array, queue: jax.Array, temperature: float | jax.Array
) -> tuple[jax.Array, jax.Array]:
    """MoCo's InfoNCE: queries `q` `[n, d]` against their keys `k` and the `queue` `[K, d]`.

    Logits are `[q·k, q·queueᵀ] / τ` with the positive at index 0; the loss is the
    cross-entropy averaged over the n queries, top1 the fraction of queries whose own key
    scores highest. `q` and `k` are normalised here; the queue holds keys already normalised
    by `enqueue`. Gradients flow only into `q`: keys come from the momentum encoder.

    Every device sees the same queue, so on batch-sharded global arrays under `jax.jit` this
    is the whole-batch loss; per device (MoCo's DDP) the mean of the local losses and
    gradients is the same thing.
    """
    if q.ndim != 2 or q.shape != k.shape or queue.ndim != 2 or queue.shape[1] != q.shape[1]:
        raise ValueError(
            f"need q, k [batch, dim] and queue [size, dim]; got {q.shape}, {k.shape}, {queue.shape}"
        )
    q = l2_normalize(q)
    k = lax.stop_gradient(l2_normalize(k))
    queue = lax.stop_gradient(queue.astype(jnp.float32))
    positive = jnp.sum(q * k, axis=-1, keepdims=True)
    logits = jnp.concatenate([positive, _similarity(q, queue)], axis=-1) / temperature
    loss = -jnp.mean(jax.nn.log_softmax(logits, axis=-1)[:, 0])
    top1 = jnp.mean(jnp.argmax(logits, axis=-1) == 0)
    return loss, top1


def enqueue(
    queue: jax.Array, ptr: jax.Array | int, keys: jax.Array, *, axis_name: str | None = None
) -> tuple[jax.Array, jax.Array]:
    """MoCo's FIFO dictionary: write `keys` (normalised, no gradient) over the oldest entries.

    `queue[ptr]` is the oldest entry. The N keys go to rows `ptr, ptr+1, …` modulo the queue
    size, so a batch may straddle the end of the queue even when the size is not a multiple of
    N; returns `(queue, (ptr + N) % size)`.

    With `axis_name` (inside `shard_map`/`pmap`), the keys of every device are written, in
    device order, so each device's copy of the queue stays identical. They are gathered with a
    `psum` of per-device slots rather than `all_gather`, so that `shard_map`'s replication
    check (`check_vma`) knows the new queue is the same on every device.
    """
    if keys.ndim != 2 or queue.ndim != 2 or keys.shape[1] != queue.shape[1]:
        raise ValueError(
            f"need keys [batch, dim] and queue [size, dim]; got {keys.shape}, {queue.shape}"
        )
    keys = lax.stop_gradient(l2_normalize(keys)).astype(queue.dtype)
    if spans_devices(axis_name):
        slots = jnp.zeros((lax.axis_size(axis_name), *keys.shape), keys.dtype)
        slots = slots.at[lax.axis_index(axis_name)].set(keys)
        keys = lax.psum(slots, axis_name).reshape(-1, keys.shape[1])
    size, n = queue.shape[0], keys.shape[0]
    if n > size:
        raise ValueError(f"cannot enqueue {n} keys (global batch) into a queue of {size}")
    ptr = jnp.asarray(ptr, jnp.int32)
    rows = (ptr + jnp.arange(n)) % size
    return queue.at[rows].set(keys, unique_indices=True), (ptr + n) % size


def negative_cosine(p: jax.Array, z: jax.Array) -> jax.Array:
    """SimSiam's D(p, z) = −cos(p, stop_gradient(z)), averaged over the batch.

    The stop-gradient on the target `z` is what keeps SimSiam from collapsing (its §4.1); the
    symmetric loss is `negative_cosine(p1, z2) / 2 + negative_cosine(p2, z1) / 2`.
    """
    if p.ndim != 2 or p.shape != z.shape:
        raise ValueError(f"p and z must both be [batch, dim]; got {p.shape}, {z.shape}")
    z = lax.stop_gradient(z)
    return -jnp.mean(jnp.sum(l2_normalize(p) * l2_normalize(z), axis=-1))


def cpc_info_nce(
    predictions: jax.Array, targets: jax.Array, *, axis_name: str | None = None
) -> tuple[jax.Array, jax.Array]:
    """CPC's InfoNCE over K future steps (van den Oord et al. 2018; Haresamudram et al.'s
    CPC for HAR): `predictions[k, i]` is example i's prediction `W_k c_t` of its latent k + 1
    steps ahead, `targets[k, i]` that latent `z_{t+k+1}` (`[K, n, d]` each).

    Each prediction scores every example's latent at the same step by a dot product; the
    positive is its own, the negatives the other examples' (of the global batch with
    `axis_name`, as `nt_xent` gathers). The loss is the cross-entropy averaged over the K
    steps and the local predictions; also returns the fraction whose own latent scores
    highest. Gradients reach both predictions and latents (no normalisation, no temperature,
    as CPC). Averaging the per-device results over the axis is the caller's, as for `nt_xent`.
    """
    if predictions.ndim != 3 or predictions.shape != targets.shape:
        raise ValueError(f"predictions and targets must both be [steps, batch, dim]; got "
                         f"{predictions.shape}, {targets.shape}")
    predictions, targets = predictions.astype(jnp.float32), targets.astype(jnp.float32)
    n = predictions.shape[1]
    if axis_name is None:
        candidates, offset = targets, 0
    else:
        candidates = all_gather(targets.swapaxes(0, 1), axis_name).swapaxes(0, 1)
        offset = lax.axis_index(axis_name) * n
    logits = jnp.einsum("kid,kjd->kij", predictions, candidates,
                        precision=lax.Precision.HIGHEST)
    positive = offset + jnp.arange(n)
    log_prob = jax.nn.log_softmax(logits, axis=-1)
    loss = -jnp.mean(jnp.take_along_axis(log_prob, positive[None, :, None], axis=-1))
    accuracy = jnp.mean(jnp.argmax(logits, axis=-1) == positive[None, :])
    return loss, accuracy


def binary_cross_entropies(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Per-task binary cross-entropy `[tasks]` of logits and 0/1 labels `[examples, tasks]`,
    each the mean over examples (Saeed et al.'s multi-task self-supervision sums these)."""
    if logits.ndim != 2 or logits.shape != labels.shape:
        raise ValueError(f"logits and labels must both be [examples, tasks]; got "
                         f"{logits.shape}, {labels.shape}")
    return jnp.mean(optax.sigmoid_binary_cross_entropy(logits.astype(jnp.float32),
                                                       labels.astype(jnp.float32)), axis=0)
