"""A fine-tuned IMU classifier: raw accelerometer windows → frontend → encoder → linear head.

It is what downstream training produces and what `img2imu predict` loads. The frontend turns
raw windows into what the encoder takes: spectrogram images for the 2D ResNet (`Frontend`), or
the windows normalised per axis with the pre-training corpus's statistics for the 1D sensor
encoder (`SensorFrontend`). It is kept apart from the network (`Classifier`): the network's
compiled programs then depend only on the input shape, so one compile serves every setting of
the spectrogram grid, and a saved classifier records its frontend beside the weights.

On disk a classifier is a directory: `state/` (an Orbax checkpoint of the module's arrays) and
`classifier.json` (architecture, classes, spectrogram and window settings, how it was trained).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from etils import epath
from flax import nnx

from img2imu_jax.checkpoint import abstract_like
from img2imu_jax.models import build_encoder
from img2imu_jax.models.resnet import ResNet
from img2imu_jax.models.sensor_cnn import SensorCNN
from img2imu_jax.paths import user_path
from img2imu_jax.spectrogram import normalize_imagenet, spectrogram_image

METADATA = "classifier.json"
STATE = "state"


class _Inputs:
    """What both frontends share: their output for many windows, batch by batch on a device."""

    def images(self, windows: np.ndarray, *, batch_size: int = 1024) -> jax.Array:
        """The encoder's inputs for `windows` (spectrogram images, or normalised windows),
        computed on the default device and left there."""
        return jnp.concatenate([_frontend(self, padded)[:n]
                                for padded, n in _padded_batches(windows, batch_size)])


@dataclasses.dataclass(frozen=True)
class Frontend(_Inputs):
    """Raw `[B, time, 3]` windows → the normalised spectrogram images encoders take.

    Hashable by value: jitted functions take it as a static argument, so each setting compiles
    its (small) spectrogram program once, and everything after it compiles once per image
    shape, whatever the setting.
    """

    sample_rate: float
    nfft: int
    noverlap: int

    def __call__(self, windows: jax.Array) -> jax.Array:
        images = spectrogram_image(windows, sample_rate=self.sample_rate, nfft=self.nfft,
                                   noverlap=self.noverlap)
        return normalize_imagenet(images)

    @property
    def setting(self) -> tuple[int, int]:
        """What the protocol chose on validation, as results.json records it."""
        return self.nfft, self.noverlap


@dataclasses.dataclass(frozen=True)
class SensorFrontend(_Inputs):
    """Raw `[B, time, 3]` windows → `(windows − mean) / std` per axis, what the 1D encoder
    takes; `mean` and `std` are the pre-training corpus's (`imu.sensor_corpus`), so downstream
    windows are scaled as pre-training's were. Hashable by value, like `Frontend`."""

    sample_rate: float
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def __post_init__(self):
        mean, std = (tuple(float(v) for v in np.ravel(a)) for a in (self.mean, self.std))
        if len(mean) != 3 or len(std) != 3 or not all(s > 0 for s in std):
            raise ValueError(f"per-axis mean and std must be 3 values, std > 0; got {mean}, {std}")
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "std", std)

    def __call__(self, windows: jax.Array) -> jax.Array:
        mean, std = (jnp.asarray(v, jnp.float32) for v in (self.mean, self.std))
        return (jnp.asarray(windows, jnp.float32) - mean) / std

    @property
    def setting(self) -> None:
        """No setting to choose: results.json records null."""
        return None


@functools.partial(jax.jit, static_argnums=0)
def _frontend(frontend: Frontend | SensorFrontend, windows: jax.Array) -> jax.Array:
    return frontend(windows)


class Classifier(nnx.Module):
    """An encoder over its frontend's output (spectrogram images `[B, H, W, 3]` for a ResNet,
    normalised windows `[B, time, 3]` for the 1D encoder), then a linear head; the frontend
    travels beside it (in `classifier.json` when saved)."""

    def __init__(self, encoder: ResNet | SensorCNN, n_classes: int, *, rngs: nnx.Rngs):
        self.encoder = encoder
        self.head = nnx.Linear(encoder.features, n_classes, rngs=rngs)

    def __call__(self, images: jax.Array) -> jax.Array:
        return self.head(self.encoder(images).astype(jnp.float32))


@dataclasses.dataclass(frozen=True)
class Features:
    """Frozen encoder features (float32) of raw windows, the frontend fused into the same
    compiled function; hashable by value, so every encoder of one architecture shares one
    compiled extractor per setting."""

    frontend: Frontend | SensorFrontend

    def __call__(self, encoder: nnx.Module, windows: jax.Array) -> jax.Array:
        return encoder(self.frontend(windows)).astype(jnp.float32)


def probabilities(classifier: Classifier, images: jax.Array) -> jax.Array:
    return jax.nn.softmax(classifier(images))


def in_batches(module: nnx.Module, apply: Callable[[nnx.Module, jax.Array], jax.Array],
               inputs: np.ndarray | jax.Array, *, batch_size: int = 1024) -> np.ndarray:
    """`apply(module, batch)` over `inputs` in eval mode, one compiled shape for every batch.

    The last batch is padded (and the padding dropped), so a dataset of any size compiles
    once; eval-mode BatchNorm makes each input's output independent of its batch.
    `apply` must be hashable (a module-level function, a `Features`): the compiled program is
    cached on it and on the module's structure, so folds and encoders reuse it.
    """
    module.eval()
    graphdef, state = nnx.split(module)
    return np.concatenate([np.asarray(_apply(graphdef, apply, state, padded))[:n]
                           for padded, n in _padded_batches(inputs, batch_size)])


def _padded_batches(values, batch_size: int):
    """`(batch, real size)` over `values`, each batch zero-padded to one size: `batch_size`, or
    for fewer values the next power of two, so different sizes mostly share one program."""
    batch_size = min(batch_size, 1 << max(len(values) - 1, 0).bit_length())
    for start in range(0, len(values), batch_size):
        batch = values[start:start + batch_size]
        pad = ((0, batch_size - len(batch)),) + ((0, 0),) * (batch.ndim - 1)
        yield jnp.pad(batch, pad) if isinstance(batch, jax.Array) else np.pad(batch, pad), \
            len(batch)


@functools.partial(jax.jit, static_argnums=(0, 1))
def _apply(graphdef, apply, state, batch):
    return apply(nnx.merge(graphdef, state), batch)


def class_probabilities(classifier: Classifier, frontend: Frontend | SensorFrontend,
                        windows: np.ndarray, *, batch_size: int = 1024) -> np.ndarray:
    """Softmax probabilities `[N, classes]` of raw `[N, time, 3]` windows."""
    return in_batches(classifier, probabilities, frontend.images(windows, batch_size=batch_size),
                      batch_size=batch_size)


def save_classifier(directory: str | os.PathLike, classifier: Classifier,
                    frontend: Frontend | SensorFrontend, metadata: dict[str, Any]) -> epath.Path:
    """Writes `classifier`, its `frontend` and `metadata` (classes, window settings…) as a
    directory `load_classifier` reads; an existing one is replaced only once the new one is
    complete."""
    directory = user_path(directory, what="classifier directory")
    staging = directory.with_name(directory.name + ".partial")
    with ocp.StandardCheckpointer() as checkpointer:
        checkpointer.save(staging / STATE, nnx.to_pure_dict(nnx.state(classifier)), force=True)
    record = {**metadata, **_architecture(classifier.encoder),
              "n_classes": classifier.head.out_features,
              "frontend": "sensor" if isinstance(frontend, SensorFrontend) else "spectrogram",
              **dataclasses.asdict(frontend)}
    (staging / METADATA).write_text(json.dumps(record, indent=2) + "\n")
    if directory.exists():
        directory.rmtree()
    staging.rename(directory)
    return directory


def _architecture(encoder: ResNet | SensorCNN) -> dict[str, Any]:
    """What `build_encoder` needs to build `encoder` again, as `classifier.json` records it."""
    if isinstance(encoder, SensorCNN):
        return {"architecture": "sensor_cnn", "fc_features": encoder.features}
    return {"architecture": "resnet", "depth": encoder.depth,
            "width": encoder.conv1.out_features}


def load_classifier(directory: str | os.PathLike
                    ) -> tuple[Classifier, Frontend | SensorFrontend, dict[str, Any]]:
    """The classifier saved in `directory`, its frontend and its metadata."""
    directory = user_path(directory, what="classifier")
    meta_path = directory / METADATA
    if not meta_path.is_file():
        raise ValueError(f"{directory} is not a saved classifier (no {METADATA}); fine-tuned "
                         "models are written to FINETUNE_WORKDIR/models/<name>")
    try:
        meta = json.loads(meta_path.read_text())
        # Abstract: the restore below fills every array, so no initialiser runs (or compiles).
        # Classifiers saved before 1D encoders existed record neither key: ResNet, spectrogram.
        architecture = meta.get("architecture", "resnet")
        shape = ({"fc_features": meta["fc_features"]} if architecture == "sensor_cnn"
                 else {"depth": meta["depth"], "width": meta["width"]})
        classifier = nnx.eval_shape(lambda: Classifier(
            build_encoder(architecture, **shape, rngs=nnx.Rngs(0)), meta["n_classes"],
            rngs=nnx.Rngs(0)))
        if meta.get("frontend", "spectrogram") == "sensor":
            frontend = SensorFrontend(float(meta["sample_rate"]), meta["mean"], meta["std"])
        else:
            frontend = Frontend(float(meta["sample_rate"]), int(meta["nfft"]),
                                int(meta["noverlap"]))
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{meta_path} is not a valid classifier description: {e!r}") from e
    one = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    target = abstract_like(nnx.to_pure_dict(nnx.state(classifier)), one)
    try:
        with ocp.StandardCheckpointer() as checkpointer:
            restored = checkpointer.restore(directory / STATE, target)
    except Exception as e:
        first = (str(e).strip().splitlines() or [""])[0][:200]
        raise ValueError(f"cannot restore the classifier in {directory}: "
                         f"{type(e).__name__}: {first}") from e
    state = nnx.state(classifier)
    nnx.replace_by_pure_dict(state, restored)
    nnx.update(classifier, state)
    return classifier, frontend, meta
