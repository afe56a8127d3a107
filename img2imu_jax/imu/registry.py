"""Dataset names → loaders, so configs and commands name a dataset by a plain string."""

from __future__ import annotations

import os
from collections.abc import Callable

from img2imu_jax.imu.recordings import IMUDataset


def _loaders(sample_rate: float | None) -> dict[str, Callable[..., IMUDataset]]:
    from img2imu_jax.imu.basicmotions import load_basicmotions
    from img2imu_jax.imu.capture24 import load_capture24
    from img2imu_jax.imu.daphnet import load_daphnet
    from img2imu_jax.imu.generic import load_generic
    from img2imu_jax.imu.goat import load_goat
    from img2imu_jax.imu.pvs import load_pvs
    from img2imu_jax.imu.wisdm import load_wisdm_2019, load_wisdm_v1

    return {
        "basicmotions": lambda data_dir: load_basicmotions(data_dir or None),
        "wisdm_v1": load_wisdm_v1,
        "wisdm2019": load_wisdm_2019,
        "daphnet": load_daphnet,
        "goat": load_goat,
        "pvs": load_pvs,
        "capture24": load_capture24,
        "generic": lambda path: load_generic(path, sample_rate=sample_rate),
    }


DATASETS = ("basicmotions", "wisdm_v1", "wisdm2019", "daphnet", "goat", "pvs", "capture24",
            "generic")


def load_dataset(
    name: str, data_dir: str | os.PathLike | None = None, *, sample_rate: float | None = None
) -> IMUDataset:
    """`basicmotions` needs no data_dir (it ships with sktime); the published datasets read the
    authors' files from `data_dir`; `generic` reads your CSV or NPZ file (`data_dir` is that
    file) recorded at `sample_rate` Hz."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")
    if name != "basicmotions" and not data_dir:
        raise ValueError(f"dataset {name!r} needs a data_dir holding its published files")
    if name == "generic" and not sample_rate:
        raise ValueError("a generic dataset needs its sample rate (data.generic_sample_rate)")
    return _loaders(sample_rate)[name](data_dir)
