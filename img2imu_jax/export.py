"""`img2imu export`: checkpoints for PyTorch (torchvision), phones (LiteRT) and XLA (StableHLO).

- torchvision: a pre-training checkpoint's encoder (and projection head when asked) or a saved
  classifier's encoder and head, as a ResNet `state_dict` (`torch_weights`).
- LiteRT and StableHLO: a saved classifier as one program from a raw accelerometer window
  `[batch, time, 3]` at the classifier's sample rate to class probabilities, the spectrogram
  inside, so a phone app needs no frontend of its own. Its description (classes, the
  `classifier.json` fields, the input contract) is written beside it as JSON.

The LiteRT path converts through TensorFlow (`jax2tf` graph lowering, which TFLite's converter
turns into built-in ops only): the spectrogram is a strided convolution, no FFT op is needed.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from img2imu_jax.checkpoint import CHECKPOINTS, saved_model_part
from img2imu_jax.classifier import METADATA, Classifier, Frontend, load_classifier
from img2imu_jax.paths import is_remote, user_path
from img2imu_jax.torch_weights import resnet_depth, to_state_dict, write_state_dict

def _local_output(out: str | os.PathLike) -> Path:
    """Exports are written as local files (torch, TFLite and the safetensors writer take local
    paths); a gs:// or other URL is a one-line error, never a local folder named `gs:`."""
    if is_remote(out):
        raise ValueError(f"export output {os.fspath(out)!r} must be a local path; write it "
                         "locally, then copy it (e.g. gcloud storage cp)")
    return Path(user_path(out, what="export output"))


def export_torchvision(source: str | os.PathLike, out_stem: str | os.PathLike, *,
                       head: bool = False) -> tuple[list[Path], int]:
    """Writes `out_stem.safetensors` (and `.pt`) from a saved classifier (encoder + its head as
    `fc`) or a pre-training run (`WORKDIR` or its `checkpoints/`: the encoder, and with `head`
    the projection head as MoCo's `fc` Sequential). Returns the paths and the ResNet depth."""
    out_stem = _local_output(out_stem)
    source = Path(source)
    if (source / METADATA).is_file():
        classifier, _, _ = load_classifier(source)
        encoder = nnx.to_pure_dict(nnx.state(classifier.encoder))
        state_dict = to_state_dict(encoder, nnx.to_pure_dict(nnx.state(classifier.head)))
    else:
        checkpoints = source / CHECKPOINTS if (source / CHECKPOINTS).is_dir() else source
        encoder = saved_model_part(checkpoints, "encoder")
        state_dict = to_state_dict(encoder, saved_model_part(checkpoints, "head") if head
                                   else None)
    return write_state_dict(out_stem, state_dict), resnet_depth(encoder)


def window_length(meta: dict[str, Any]) -> int:
    """Samples per window the classifier takes: its seconds at its (resampled) rate, as
    `imu.windows` cuts them."""
    return round(meta["seconds"] * meta["sample_rate"])


def probability_function(classifier: Classifier,
                         frontend: Frontend) -> Callable[[jax.Array], jax.Array]:
    """Raw windows `[batch, time, 3]` → class probabilities, eval mode, weights as constants."""
    classifier.eval()
    graphdef, state = nnx.split(classifier)

    def probabilities(windows: jax.Array) -> jax.Array:
        return jax.nn.softmax(nnx.merge(graphdef, state)(frontend(windows)))

    return probabilities


def description(meta: dict[str, Any], program: str) -> dict[str, Any]:
    """What travels beside an exported program: the classifier's metadata and its contract."""
    return {**meta, "program": program, "input": {
        "shape": ["batch", window_length(meta), 3], "dtype": "float32",
        "sample_rate_hz": meta["sample_rate"], "axes": ["x", "y", "z"],
        "note": "accelerometer as the training dataset recorded it (same units, gravity "
                "included or not as there); resample to sample_rate_hz first"},
        "output": {"shape": ["batch", len(meta["classes"])], "classes": meta["classes"],
                   "meaning": "softmax probabilities"}}


def export_stablehlo(classifier_dir: str | os.PathLike, out: str | os.PathLike) -> Path:
    """The classifier as a serialized `jax.export` artifact, any batch size; returns its path."""
    out = _local_output(out)
    classifier, frontend, meta = load_classifier(classifier_dir)
    batch, = jax.export.symbolic_shape("batch")
    exported = jax.export.export(jax.jit(probability_function(classifier, frontend)))(
        jax.ShapeDtypeStruct((batch, window_length(meta), 3), jnp.float32))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(exported.serialize())
    _write_description(out, description(meta, "jax.export (StableHLO)"))
    return out


def load_stablehlo(path: str | os.PathLike) -> jax.export.Exported:
    """An exported classifier; call it with `.call(windows)`."""
    return jax.export.deserialize(bytearray(Path(path).read_bytes()))


def export_litert(classifier_dir: str | os.PathLike, out: str | os.PathLike) -> Path:
    """The classifier as one float32 `.tflite` taking `[1, time, 3]`; returns its path."""
    out = _local_output(out)
    import tensorflow as tf
    from jax.experimental import jax2tf

    classifier, frontend, meta = load_classifier(classifier_dir)
    shape = (1, window_length(meta), 3)
    function = tf.function(
        jax2tf.convert(probability_function(classifier, frontend), native_serialization=False,
                       with_gradient=False),
        autograph=False, input_signature=[tf.TensorSpec(shape, tf.float32, name="window")])
    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [function.get_concrete_function()], function)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(converter.convert())
    _write_description(out, description(meta, "LiteRT float32") | {"input_shape": list(shape)})
    return out


def litert_probabilities(path: str | os.PathLike, windows: np.ndarray) -> np.ndarray:
    """Probabilities `[N, classes]` of windows `[N, time, 3]` from a `.tflite`, one at a time,
    with the LiteRT interpreter (`ai-edge-litert`)."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=os.fspath(path))
    interpreter.allocate_tensors()
    given, = interpreter.get_input_details()
    taken, = interpreter.get_output_details()
    rows = []
    for window in np.asarray(windows, np.float32):
        interpreter.set_tensor(given["index"], window[None])
        interpreter.invoke()
        rows.append(interpreter.get_tensor(taken["index"])[0].copy())
    return np.stack(rows)


def _write_description(program: Path, record: dict[str, Any]) -> None:
    program.with_name(program.name + ".json").write_text(json.dumps(record, indent=2) + "\n")
