"""`img2imu finetune`: the encoders and windows a config names, the protocol run on each, and
the results on disk — results.json, results.md, f1_vs_shots.png and the saved classifiers.
"""

from __future__ import annotations

import functools
import json
import logging
import os
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np
from flax import nnx

from img2imu_jax import reports
from img2imu_jax.checkpoint import abstract_like, restore_encoder, saved_input_stats
from img2imu_jax.classifier import SensorFrontend, save_classifier
from img2imu_jax.finetune.protocol import evaluate, spectrogram_grid
from img2imu_jax.finetune.training import FullFinetune
from img2imu_jax.imu.recordings import IMUDataset
from img2imu_jax.imu.registry import load_dataset
from img2imu_jax.imu.windows import WINDOW_OVERLAP, Windows, make_windows
from img2imu_jax.models import build_encoder
from img2imu_jax.models.resnet import ResNet
from img2imu_jax.models.sensor_cnn import SensorCNN
from img2imu_jax.paths import user_path
from img2imu_jax.protocol_log import ProtocolProgress
from img2imu_jax.torch_weights import initialise_encoder

log = logging.getLogger(__name__)

# The `config.data` fields that say where windows come from; saved with every classifier.
SOURCE_KEYS = ("dataset", "data_dir", "generic_sample_rate", "label_rule")


def run(config, workdir: str | os.PathLike,
        encoders: dict[str, ResNet | SensorCNN] | None = None,
        normalisation: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None) -> dict:
    """`img2imu finetune`: the protocol for each encoder — by default `default_encoders` — written
    as results.json, results.md, f1_vs_shots.png and, with `config.save_models`, one saved
    classifier per encoder and mode under `models/`.

    A 1D encoder takes the windows normalised per axis: with `normalisation[name]` (its
    pre-training corpus's `(mean, std)`) when given, else `default_normalisation`'s."""
    workdir = user_path(workdir, what="workdir")
    workdir.mkdir(parents=True, exist_ok=True)
    dataset, windows = source_windows(config.data, seconds=config.data.seconds,
                                      sample_rate=config.data.sample_rate)
    grid = spectrogram_grid(config.grid_nfft, config.grid_gaps)
    if encoders is None:
        encoders = default_encoders(config)
    results: dict[str, dict] = {mode: {} for mode in config.modes}
    saved = {}
    progress = ProtocolProgress(len(encoders) * config.folds * sum(
        len(modes) * len(shots) for modes, shots in _shot_groups(config)), workdir)
    for name, encoder in encoders.items():
        log.info("%s of the %s encoder on %s (%d windows, %d subjects)",
                 " and ".join(config.modes), name, dataset.name, len(windows),
                 len(dataset.subjects))
        by_mode, models = {}, {}
        frontends = ()
        if isinstance(encoder, SensorCNN):
            stats = (normalisation or {}).get(name) or default_normalisation(config, windows)
            frontends = (SensorFrontend(windows.sample_rate, *stats),)
        for modes, shots in _shot_groups(config):
            found, best = evaluate(encoder, windows, modes=modes, shots=shots,
                                   folds=config.folds, grid=grid, seed=config.seed,
                                   frontends=frontends,
                                   epochs=config.epochs, linear_lr=config.linear_lr,
                                   full=FullFinetune(**config.finetune),
                                   on_result=functools.partial(progress, name),
                                   **linear_protocol(config))
            by_mode.update(found)
            models.update(best)
        for mode, by_n in by_mode.items():
            results[mode][name] = by_n
        for mode, model in models.items() if config.save_models else ():
            origin = {key: value for key, value in model.items()
                      if key not in ("classifier", "frontend")}
            path = save_classifier(
                workdir / "models" / f"{_slug(name)}-{mode}", model["classifier"],
                model["frontend"],
                {"dataset": dataset.name, "classes": list(dataset.classes), "encoder": name,
                 "mode": mode, "seconds": config.data.seconds, "overlap": WINDOW_OVERLAP,
                 "source_sample_rate": dataset.recordings[0].sample_rate,
                 "source": {key: config.data[key] for key in SOURCE_KEYS}, **origin})
            saved[f"{name} / {mode}"] = str(path)
    progress.close()
    record = {"dataset": dataset.name, "windows": len(windows), "classes": list(dataset.classes),
              "linear_protocol": config.linear.protocol,
              "skipped_source_lines": dataset.skipped, "pretrained": config.pretrained,
              "results": {mode: {name: {str(n): r for n, r in by_n.items()}
                                 for name, by_n in by_name.items()}
                          for mode, by_name in results.items()},
              "models": saved}
    (workdir / "results.json").write_text(json.dumps(record, indent=2) + "\n")
    (workdir / "results.md").write_text(reports.results_markdown(record))
    reports.plot_f1_vs_shots(record, workdir / "f1_vs_shots.png")
    return record


def source_windows(source: Mapping[str, Any], *, seconds: float,
                   sample_rate: float) -> tuple[IMUDataset, Windows]:
    """The dataset `source` names (`SOURCE_KEYS` of `config.data`) and its windows."""
    dataset = load_dataset(source["dataset"], source["data_dir"] or None,
                           sample_rate=source["generic_sample_rate"] or None)
    return dataset, make_windows(dataset, seconds=seconds, sample_rate=sample_rate,
                                 label_rule=source["label_rule"])


def linear_protocol(config) -> dict:
    """`evaluate`'s head-rate arguments for `config.linear.protocol`."""
    if config.linear.protocol == "paper":
        return {}
    return {"tuned_lrs": tuple(config.linear.lrs), "standardize": config.linear.standardize}


def _shot_groups(config) -> list[tuple[tuple[str, ...], tuple[int, ...]]]:
    """(modes, shots) to evaluate together: the full fine-tune may use fewer shot counts."""
    shots, modes = tuple(config.shots), tuple(config.modes)
    own = tuple(config.finetune_shots)
    if "finetune" not in modes or not own or own == shots:
        return [(modes, shots)]
    linear = [(("linear",), shots)] if "linear" in modes else []
    return linear + [(("finetune",), own)]


def default_encoders(config) -> dict[str, ResNet | SensorCNN]:
    """The encoders `run` evaluates by default: the pre-trained one (`config.pretrained`), one
    from torchvision weights (`config.init`) and a randomly initialised one."""
    encoders = {"random init": load_encoder(config, None)}
    if config.get("init"):
        encoders = {"torchvision init": initialise_encoder(load_encoder(config, None),
                                                           config.init), **encoders}
    if config.pretrained:
        encoders = {"pre-trained": load_encoder(config, config.pretrained), **encoders}
    return encoders


def load_encoder(config, checkpoints: str | None) -> ResNet | SensorCNN:
    """The config's encoder (`config.model.encoder`): restored from a pre-training
    `checkpoints/` directory, or random."""
    encoder = build_encoder(config.model.encoder, depth=config.model.depth,
                            width=config.model.width,
                            fc_features=config.model.fc_features,
                            rngs=nnx.Rngs(config.seed))
    if checkpoints:
        one = jax.sharding.SingleDeviceSharding(jax.devices()[0])
        nnx.update(encoder, restore_encoder(user_path(checkpoints, what="pretrained"),
                                            abstract_like(nnx.state(encoder), one)))
    return encoder


def default_normalisation(config, windows: Windows) -> tuple[np.ndarray, np.ndarray]:
    """Per-axis `(mean, std)` for a 1D encoder's windows: those saved with `config.pretrained`
    (its pre-training corpus's, for the pre-trained and the random-init encoder alike); with no
    checkpoint, the evaluated windows' own (labels play no part)."""
    if config.pretrained:
        return saved_input_stats(user_path(config.pretrained, what="pretrained"))
    flat = windows.samples.reshape(-1, 3).astype(np.float64)
    return flat.mean(axis=0), flat.std(axis=0)


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name.lower()).strip("_")
