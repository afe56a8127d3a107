"""Our ResNet's arrays ↔ a torchvision ResNet `state_dict`: one name and layout mapping, both ways.

Our attribute names already follow torchvision (`models/resnet.py`), so a name is the path
joined by dots with Flax's leaf names renamed (`kernel`/`scale` → `weight`, `mean`/`var` →
`running_mean`/`running_var`) and `nnx.Sequential`'s `layers` dropped; arrays change layout
(conv HWIO ↔ OIHW, linear `[in, out]` ↔ `[out, in]`). A head becomes torchvision's `fc`: a
classifier's `nnx.Linear` is `fc` itself, a pre-training projection head the
`nn.Sequential(Linear, [BatchNorm1d,] ReLU, …, Linear[, BatchNorm1d])` MoCo puts at `fc`.

The running variance is copied as is: ours tracks the biased batch variance, torchvision's the
unbiased one, but in eval mode both divide by the stored value, so the function is the same.
Files are read as data only: safetensors, or `.pt`/`.pth` through
`torch.load(weights_only=True)`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

import jax.numpy as jnp
import numpy as np
from flax import nnx

from img2imu_jax.models.resnet import STAGE_SIZES, ResNet

_LEAF_NAMES = {"kernel": "weight", "scale": "weight", "bias": "bias", "mean": "running_mean",
               "var": "running_var"}
TORCH_SUFFIXES = (".safetensors", ".pt", ".pth")
# `config.init` (pre-training and fine-tuning): a torchvision state_dict on disk.
INIT_SCHEME = "torchvision:"


def _flat(tree: Mapping) -> dict[tuple[str, ...], np.ndarray]:
    """`{path: array}` of a pure-dict tree, Orbax's trailing `value` level dropped."""
    flat = nnx.traversals.flatten_mapping(tree)
    return {tuple(str(p) for p in path if p != "value"): np.asarray(v)
            for path, v in flat.items()}


def _to_torch_layout(array: np.ndarray) -> np.ndarray:
    if array.ndim == 4:
        return np.ascontiguousarray(array.transpose(3, 2, 0, 1))  # HWIO → OIHW
    return np.ascontiguousarray(array.T) if array.ndim == 2 else array


def _from_torch_layout(array: np.ndarray) -> np.ndarray:
    if array.ndim == 4:
        return array.transpose(2, 3, 1, 0)  # OIHW → HWIO
    return array.T if array.ndim == 2 else array


def _encoder_name(path: tuple[str, ...]) -> str:
    *modules, leaf = path
    modules = [m for i, m in enumerate(modules) if not (m == "layers" and modules[i - 1:i] ==
                                                          ["downsample"])]
    return ".".join(modules + [_LEAF_NAMES[leaf]])


def _head_name(path: tuple[str, ...], norms: bool) -> str:
    """`fc` for a classifier's Linear; `fc.<index>` into MoCo's Sequential for a projection head
    (each layer is Linear, then BatchNorm1d when `norms`, then ReLU)."""
    *modules, leaf = path
    if not modules:
        return f"fc.{_LEAF_NAMES[leaf]}"
    kind, layer = modules
    index = int(layer) * (3 if norms else 2) + (kind == "norms")
    return f"fc.{index}.{_LEAF_NAMES[leaf]}"


def _with_batch_counts(state_dict: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """torchvision's BatchNorm also saves `num_batches_tracked`; strict loading requires it."""
    counts = {name.removesuffix("running_mean") + "num_batches_tracked": np.zeros((), np.int64)
              for name in state_dict if name.endswith("running_mean")}
    return {**state_dict, **counts}


def to_state_dict(encoder: Mapping, head: Mapping | None = None) -> dict[str, np.ndarray]:
    """A torchvision ResNet `state_dict` (numpy arrays) of our encoder's pure-dict tree and,
    when given, a head's (`nnx.Linear` or `ProjectionHead`)."""
    state_dict = {_encoder_name(path): _to_torch_layout(array)
                  for path, array in _flat(encoder).items()}
    if head is not None:
        flat_head = _flat(head)
        norms = any(path[0] == "norms" for path in flat_head)
        for path, array in flat_head.items():
            state_dict[_head_name(path, norms)] = _to_torch_layout(array)
        last_norm = max((int(p[1]) for p in flat_head if p[0] == "norms"), default=None)
        last_linear = max((int(p[1]) for p in flat_head if p[0] == "linears"), default=None)
        if last_norm is not None and last_norm == last_linear:  # SimCLR's centre-free last BN
            bias = _head_name(("norms", str(last_norm), "bias"), True)
            scale = state_dict[_head_name(("norms", str(last_norm), "scale"), True)]
            state_dict.setdefault(bias, np.zeros_like(scale))
    return _with_batch_counts(state_dict)


def resnet_depth(encoder: Mapping) -> int:
    """The depth (18, 34, 50, 101) of an encoder tree, from its blocks per stage."""
    names = {p[:3] for p in _flat(encoder) if p[0].startswith("layer")}
    blocks = tuple(len({p[1] for p in names if p[0] == f"layer{s}"}) for s in range(1, 5))
    bottleneck = any(p[2] == "conv3" for p in names)
    for depth, sizes in STAGE_SIZES.items():
        if sizes == blocks and (depth >= 50) == bottleneck:
            return depth
    raise ValueError(f"not a ResNet-18/34/50/101 encoder: blocks per stage {blocks}")


def load_encoder_weights(encoder: ResNet, state_dict: Mapping[str, np.ndarray],
                         source: str = "state_dict") -> None:
    """Sets `encoder`'s parameters and BatchNorm statistics from a torchvision ResNet
    `state_dict`; its `fc` is ignored. Any missing, extra or misshapen tensor is an error."""
    ours = nnx.to_pure_dict(nnx.state(encoder))
    flat = nnx.traversals.flatten_mapping(ours)
    expected = {_encoder_name(tuple(str(p) for p in path)): path for path in flat}
    given = {name for name in state_dict
             if not name.startswith("fc.") and not name.endswith("num_batches_tracked")}
    missing, extra = sorted(set(expected) - given), sorted(given - set(expected))
    if missing or extra:
        raise ValueError(f"{source} is not a torchvision ResNet-{encoder.depth} of width "
                         f"{encoder.conv1.out_features}: missing {missing[:3]}, unexpected "
                         f"{extra[:3]}")
    for name, path in expected.items():
        value = _from_torch_layout(np.asarray(state_dict[name], np.float32))
        if value.shape != flat[path].shape:
            raise ValueError(f"{source}: {name} has shape {value.shape} in our layout; "
                             f"the model needs {flat[path].shape}")
        flat[path] = jnp.asarray(value)
    state = nnx.state(encoder)
    nnx.replace_by_pure_dict(state, nnx.traversals.unflatten_mapping(flat))
    nnx.update(encoder, state)


def torchvision_init(init: str) -> str | None:
    """The state_dict path of a `config.init` value ('' = none); a one-line error for a bad
    scheme or a missing file, before anything compiles."""
    if not init:
        return None
    if not init.startswith(INIT_SCHEME):
        raise ValueError(f"invalid config: init must be '' or '{INIT_SCHEME}PATH'; got {init!r}")
    path = init.removeprefix(INIT_SCHEME)
    if not os.path.isfile(path):
        raise ValueError(f"invalid config: init file {path} does not exist")
    if not path.endswith(TORCH_SUFFIXES):
        raise ValueError(f"invalid config: init file {path} must be "
                         f"{', '.join(TORCH_SUFFIXES[:-1])} or {TORCH_SUFFIXES[-1]}")
    return path


def initialise_encoder(encoder: ResNet, init: str) -> ResNet:
    """`encoder` with the weights `config.init` names ('torchvision:PATH'; '' leaves it)."""
    path = torchvision_init(init)
    if path is not None:
        load_encoder_weights(encoder, read_state_dict(path), path)
    return encoder


def read_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """A `state_dict` on disk: `.safetensors`, or `.pt`/`.pth` read with
    `torch.load(weights_only=True)` (no code runs); never downloaded."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"torchvision weights {path} do not exist")
    if path.suffix == ".safetensors":
        from safetensors.numpy import load_file

        return load_file(path)
    if path.suffix not in TORCH_SUFFIXES:
        raise ValueError(f"torchvision weights {path} must end in one of {TORCH_SUFFIXES}")
    import torch

    loaded: Any = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(loaded, Mapping) or not all(hasattr(v, "numpy") for v in loaded.values()):
        raise ValueError(f"{path} holds no state_dict (a mapping of names to tensors)")
    return {name: tensor.numpy() for name, tensor in loaded.items()}


def write_state_dict(stem: str | os.PathLike, state_dict: Mapping[str, np.ndarray]) -> list[Path]:
    """`STEM.safetensors`, and `STEM.pt` where torch is installed; the paths written."""
    from safetensors.numpy import save_file

    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    written = [stem.with_suffix(".safetensors")]
    save_file(dict(state_dict), written[0])
    try:
        import torch
    except ImportError:
        return written
    written.append(stem.with_suffix(".pt"))
    torch.save({k: torch.from_numpy(np.asarray(v)) for k, v in state_dict.items()}, written[1])
    return written
