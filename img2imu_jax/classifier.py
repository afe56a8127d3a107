"""A fine-tuned IMU classifier: raw accelerometer windows → spectrogram → encoder → linear head.

It is what downstream training produces and what `img2imu predict` loads. The spectrogram
settings live on the module as static attributes, so the whole path from raw windows to logits
is one jitted function and a saved classifier carries everything needed to use it.

On disk a classifier is a directory: `state/` (an Orbax checkpoint of the module's arrays) and
`classifier.json` (architecture, classes, spectrogram and window settings, how it was trained).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from flax import nnx

from img2imu_jax.checkpoint import abstract_like
from img2imu_jax.models.resnet import ResNet
from img2imu_jax.spectrogram import normalize_imagenet, spectrogram_image

METADATA = "classifier.json"
STATE = "state"


class Classifier(nnx.Module):
    """`encoder` over spectrogram images of `[B, time, 3]` windows, then a linear head."""

    def __init__(self, encoder: ResNet, n_classes: int, *, sample_rate: float, nfft: int,
                 noverlap: int, rngs: nnx.Rngs):
        self.encoder = encoder
        self.head = nnx.Linear(encoder.features, n_classes, rngs=rngs)
        self.sample_rate, self.nfft, self.noverlap = float(sample_rate), int(nfft), int(noverlap)

    def __call__(self, windows: jax.Array) -> jax.Array:
        return self.head(encode(self.encoder, windows, sample_rate=self.sample_rate,
                                nfft=self.nfft, noverlap=self.noverlap))


def encode(encoder: nnx.Module, windows: jax.Array, *, sample_rate: float, nfft: int,
           noverlap: int) -> jax.Array:
    """Encoder features (float32) of raw `[B, time, 3]` windows: the IMG2IMU input path."""
    images = spectrogram_image(windows, sample_rate=sample_rate, nfft=nfft, noverlap=noverlap)
    return encoder(normalize_imagenet(images)).astype(jnp.float32)


def in_batches(module: nnx.Module, apply: Callable[[nnx.Module, jax.Array], jax.Array],
               windows: np.ndarray, *, batch_size: int = 1024) -> np.ndarray:
    """`apply(module, batch)` over `windows` in eval mode, one compiled shape for every batch.

    The last batch is padded to `batch_size` (and the padding dropped), so a dataset of any
    size compiles once; eval-mode BatchNorm makes each window's output independent of its batch.
    """
    module.eval()
    graphdef, state = nnx.split(module)
    compiled = jax.jit(lambda state, batch: apply(nnx.merge(graphdef, state), batch))
    batch_size = min(batch_size, max(len(windows), 1))
    chunks = []
    for start in range(0, len(windows), batch_size):
        batch = windows[start:start + batch_size]
        padded = np.pad(batch, ((0, batch_size - len(batch)),) + ((0, 0),) * (batch.ndim - 1))
        chunks.append(np.asarray(compiled(state, padded))[: len(batch)])
    return np.concatenate(chunks)


def class_probabilities(classifier: Classifier, windows: np.ndarray, *,
                        batch_size: int = 1024) -> np.ndarray:
    """Softmax probabilities `[N, classes]` of `[N, time, 3]` windows."""
    return in_batches(classifier, lambda model, x: jax.nn.softmax(model(x)), windows,
                      batch_size=batch_size)


def save_classifier(directory: str | os.PathLike, classifier: Classifier,
                    metadata: dict[str, Any]) -> Path:
    """Writes `classifier` and `metadata` (classes, depth, width, window settings…) as a
    directory `load_classifier` reads; an existing one is replaced only once the new one is
    complete."""
    directory = Path(directory).resolve()
    staging = directory.with_name(directory.name + ".partial")
    with ocp.StandardCheckpointer() as checkpointer:
        checkpointer.save(staging / STATE, nnx.to_pure_dict(nnx.state(classifier)), force=True)
    record = {**metadata, "depth": classifier.encoder.depth,
              "width": classifier.encoder.conv1.out_features,
              "n_classes": classifier.head.out_features, "sample_rate": classifier.sample_rate,
              "nfft": classifier.nfft, "noverlap": classifier.noverlap}
    (staging / METADATA).write_text(json.dumps(record, indent=2) + "\n")
    if directory.exists():
        shutil.rmtree(directory)
    staging.rename(directory)
    return directory


def load_classifier(directory: str | os.PathLike) -> tuple[Classifier, dict[str, Any]]:
    """The classifier saved in `directory` and its metadata."""
    directory = Path(directory)
    meta_path = directory / METADATA
    if not meta_path.is_file():
        raise ValueError(f"{directory} is not a saved classifier (no {METADATA}); fine-tuned "
                         "models are written to FINETUNE_WORKDIR/models/<name>")
    try:
        meta = json.loads(meta_path.read_text())
        encoder = ResNet(meta["depth"], width=meta["width"], rngs=nnx.Rngs(0))
        classifier = Classifier(encoder, meta["n_classes"], sample_rate=meta["sample_rate"],
                                nfft=meta["nfft"], noverlap=meta["noverlap"], rngs=nnx.Rngs(0))
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{meta_path} is not a valid classifier description: {e!r}") from e
    one = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    target = abstract_like(nnx.to_pure_dict(nnx.state(classifier)), one)
    try:
        with ocp.StandardCheckpointer() as checkpointer:
            restored = checkpointer.restore((directory / STATE).resolve(), target)
    except Exception as e:
        first = (str(e).strip().splitlines() or [""])[0][:200]
        raise ValueError(f"cannot restore the classifier in {directory}: "
                         f"{type(e).__name__}: {first}") from e
    state = nnx.state(classifier)
    nnx.replace_by_pure_dict(state, restored)
    nnx.update(classifier, state)
    return classifier, meta
