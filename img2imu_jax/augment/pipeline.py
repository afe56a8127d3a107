"""`make_augment`: a spec and its params → one batched, jittable augmentation; the op registry."""

from __future__ import annotations

from typing import Protocol

import jax
import jax.numpy as jnp
from jax.sharding import NamedSharding, PartitionSpec

from img2imu_jax.augment import photo, sensor
from img2imu_jax.augment.chain import chain
from img2imu_jax.augment.spec import Op, defaults, parse_spec, resolve_params


class Augment(Protocol):
    """`augment(key, images, indices=None)`: one random view of each image, same shape, float32."""

    def __call__(
        self, key: jax.Array, images: jax.Array, indices: jax.Array | None = None
    ) -> jax.Array: ...


def make_augment(spec: str, **params: float) -> Augment:
    """Parses `spec` ("op|op|…") and its `<op>_<param>` keywords into a batched augmentation.

    Every name and value is checked here, on the host, so a bad recipe fails before tracing.
    The result, `augment(key, images, indices=None)`, is pure and traceable: call it inside the
    jitted step, or wrap it in `jax.jit`. `indices` are the images' positions in the global
    batch (default 0…B-1); example `b` draws from `fold_in(key, indices[b])`.
    """
    names = parse_spec(spec, OPS)
    values = resolve_params(spec, names, params, OPS)
    example = chain([OPS[name].build(**values[name]) for name in names])

    def augment(key: jax.Array, images: jax.Array, indices: jax.Array | None = None) -> jax.Array:
        images = _check_images(images)
        if indices is None:
            indices = jnp.arange(images.shape[0])
        else:
            indices = jnp.asarray(indices)
            if indices.shape != images.shape[:1] or not jnp.issubdtype(indices.dtype, jnp.integer):
                raise ValueError(
                    f"indices must be integers shaped [{images.shape[0]}] (one per image); got "
                    f"{indices.dtype} {indices.shape}"
                )
        keys = jax.vmap(lambda index: jax.random.fold_in(key, index))(_shard_like(indices, images))
        return jax.vmap(example)(keys, images)

    return augment


def _shard_like(indices: jax.Array, images: jax.Array) -> jax.Array:
    """`indices` split over the mesh axes the images' batch axis is split over.

    On an Explicit mesh (what `jax.make_mesh` builds by default) vmap refuses to map arrays
    whose mapped axes are sharded differently; elsewhere the batch axis's spec is None.
    """
    sharding = jax.typeof(images).sharding
    if not sharding.spec or sharding.spec[0] is None:
        return indices
    batch = NamedSharding(sharding.mesh, PartitionSpec(sharding.spec[0]))
    return jax.sharding.reshard(indices, batch)


def _check_images(images: jax.Array) -> jax.Array:
    images = jnp.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"images must be [batch, height, width, 3]; got shape {images.shape}")
    if not jnp.issubdtype(images.dtype, jnp.floating):
        raise ValueError(
            f"images must be floats in [0, 1]; got {images.dtype} (divide uint8 images by 255)"
        )
    return images.astype(jnp.float32)


OPS: dict[str, Op] = {
    **{op: Op(sensor.BUILDERS[op], sensor.PARAMS[op]) for op in sensor.BUILDERS},
    "crop": Op(photo.crop, photo.CROP_PARAMS,
               ordered=(("scale_min", "scale_max"), ("ratio_min", "ratio_max"))),
    "mocov2": Op(
        photo.mocov2,
        photo.MOCOV2_PARAMS,
        ordered=(
            ("crop_scale_min", "crop_scale_max"),
            ("crop_ratio_min", "crop_ratio_max"),
            ("blur_sigma_min", "blur_sigma_max"),
        ),
    ),
    "all": Op(photo.all_ops, photo.ALL_PARAMS),
}

# The documented defaults, for recipe configs and the README.
SENSOR_DEFAULTS = {op: defaults(params) for op, params in sensor.PARAMS.items()}
MOCOV2_DEFAULTS = defaults(photo.MOCOV2_PARAMS)
ALL_DEFAULTS = defaults(photo.ALL_PARAMS)
