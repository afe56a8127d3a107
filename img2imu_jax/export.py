"""`img2imu export`: checkpoints for PyTorch (torchvision), phones (LiteRT) and XLA (StableHLO).

- torchvision: a pre-training checkpoint's encoder (and projection head when asked) or a saved
  classifier's encoder and head, as a ResNet `state_dict` (`torch_weights`).
- LiteRT and StableHLO: a saved classifier as one program from a raw accelerometer window
  `[batch, time, 3]` at the classifier's sample rate to class probabilities, the frontend
  (spectrogram, or a 1D encoder's per-axis normalisation) inside, so a phone app needs none of
  its own. Its description (classes, the
  `classifier.json` fields, the input contract) is written beside it as JSON.

The LiteRT path is the one LiteRT documents for JAX: `jax2tf.convert` with its native
serialisation (the function as StableHLO inside a TensorFlow function), then TensorFlow's
TFLite converter, which lowers it to built-in ops only: the spectrogram is a strided
convolution, no FFT op is needed.
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
from img2imu_jax.classifier import (METADATA, Classifier, Frontend, SensorFrontend,
                                    class_probabilities, load_classifier)
from img2imu_jax.finetune.results import source_windows
from img2imu_jax.imu.protocol import macro_f1
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
        classifier, _, meta = load_classifier(source)
        if meta.get("architecture", "resnet") != "resnet":
            raise ValueError(f"{source}: a {meta['architecture']} classifier has no torchvision "
                             "form; export it --to litert or --to stablehlo")
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


def probability_function(classifier: Classifier, frontend: Frontend | SensorFrontend
                         ) -> Callable[[jax.Array], jax.Array]:
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


def export_litert(classifier_dir: str | os.PathLike, out: str | os.PathLike, *,
                  int8: bool = False, data_dir: str | None = None,
                  calibration_windows: int = 256) -> Path:
    """The classifier as one `.tflite` taking `[1, time, 3]`; returns its path.

    float32 by default. With `int8`, post-training quantisation of the network (convolutions,
    pooling, head: int8 weights and activations, calibrated on up to `calibration_windows`
    windows of the saved fold's training subjects); the spectrogram stays float32, as int8
    cannot hold a log-power range of 120 dB. The description then records the macro-F1 of the
    float classifier and of the int8 program on that fold's test windows, both cut again from
    the classifier's data (`data_dir` if it has moved).
    """
    out = _local_output(out)
    classifier, frontend, meta = load_classifier(classifier_dir)
    shape = (1, window_length(meta), 3)
    converter = _tflite_converter(probability_function(classifier, frontend), shape)
    record = description(meta, "LiteRT int8" if int8 else "LiteRT float32")
    if int8:
        train, test, labels = saved_fold_windows(meta, data_dir)
        calibration = np.random.default_rng(0).permutation(len(train))[:calibration_windows]
        program = _quantised(converter, _tflite_converter(frontend, shape), train[calibration])
    else:
        program = converter.convert()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(program)
    if int8:
        reference = class_probabilities(classifier, frontend, test).argmax(axis=-1)
        quantised = litert_probabilities(out, test).argmax(axis=-1)
        record["int8"] = {"calibration_windows": len(calibration), "test_windows": len(test),
                          "macro_f1_float": macro_f1(labels, reference),
                          "macro_f1_int8": macro_f1(labels, quantised),
                          "agreement": float(np.mean(reference == quantised))}
    _write_description(out, record | {"input_shape": list(shape)})
    return out


def _quantised(converter, frontend_converter, windows: np.ndarray) -> bytes:
    """The converter's program with int8 weights and activations calibrated on `windows`,
    except the op kinds the frontend alone converts to (bar the network's convolutions and
    head, which the frontend does not use), which stay float."""
    import tensorflow as tf

    calibration = lambda: ([window[None]] for window in windows)  # noqa: E731
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = calibration
    kinds = _op_kinds(frontend_converter.convert())
    debugger = tf.lite.experimental.QuantizationDebugger(
        converter=converter, debug_dataset=calibration,
        debug_options=tf.lite.experimental.QuantizationDebugOptions(
            denylisted_ops=sorted(kinds - {"CONV_2D", "FULLY_CONNECTED"})))
    return debugger.get_nondebug_quantized_model()


def _tflite_converter(function: Callable[[jax.Array], jax.Array], shape: tuple[int, ...]):
    """A TFLite converter of `function` on float32 `shape`, through jax2tf (native
    serialisation, StableHLO) and a TensorFlow concrete function."""
    import tensorflow as tf
    from jax.experimental import jax2tf

    graph = tf.function(
        jax2tf.convert(function, with_gradient=False),
        autograph=False, input_signature=[tf.TensorSpec(shape, tf.float32, name="window")])
    return tf.lite.TFLiteConverter.from_concrete_functions([graph.get_concrete_function()],
                                                           graph)


def _op_kinds(program: bytes) -> set[str]:
    """The builtin op names a `.tflite` program uses."""
    from ai_edge_litert.interpreter import Interpreter

    return {op["op_name"] for op in Interpreter(model_content=program)._get_ops_details()}


def saved_fold_windows(meta: dict[str, Any], data_dir: str | None = None
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The saved classifier's fold cut again from its data: training-subject windows, test
    windows and test labels, as `img2imu finetune` cut them."""
    if "source" not in meta or "test_subjects" not in meta:
        raise ValueError("this classifier does not record its data and fold (saved by an older "
                         "img2imu finetune); fine-tune it again to quantise it")
    source = dict(meta["source"], data_dir=data_dir or meta["source"]["data_dir"])
    _, windows = source_windows(source, seconds=meta["seconds"], sample_rate=meta["sample_rate"])
    if list(windows.classes) != list(meta["classes"]):
        raise ValueError(f"the data at {source['data_dir'] or 'the default location'} has "
                         f"classes {list(windows.classes)}, the classifier {meta['classes']}")
    test = np.isin(windows.subjects, meta["test_subjects"])
    train = np.isin(windows.subjects, meta["train_subjects"])
    if not test.any() or not train.any():
        raise ValueError(f"the data at {source['data_dir'] or 'the default location'} holds "
                         "none of the classifier's test or training subjects")
    return windows.samples[train], windows.samples[test], windows.labels[test]


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


def _description_path(program: Path) -> Path:
    return program.with_name(program.name + ".json")


def _write_description(program: Path, record: dict[str, Any]) -> None:
    _description_path(program).write_text(json.dumps(record, indent=2) + "\n")


def read_description(program: str | os.PathLike) -> dict[str, Any]:
    """What `export_litert` / `export_stablehlo` wrote beside `program`."""
    return json.loads(_description_path(Path(program)).read_text())
