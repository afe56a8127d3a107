"""Every downstream recipe loads and validates; on the real copies in shared/ (when present)
its windows make the paper's 5 subject-wise folds with 10 shots of every class."""

from pathlib import Path

import pytest

from img2imu_jax.config import RECIPES as CONFIGS, load_config
from img2imu_jax.finetune.config import validate_finetune
from img2imu_jax.imu.protocol import few_shot, subject_folds
from img2imu_jax.imu.registry import load_dataset
from img2imu_jax.imu.windows import make_windows

RECIPES = sorted(CONFIGS.glob("finetune_*.py"))
SHARED = {"finetune_wisdm2019.py": "wisdm2019_watch_accel_6act",
          "finetune_daphnet.py": "daphnet_fog"}


def test_every_dataset_has_a_recipe():
    names = {load_config(path, checks=validate_finetune).data.dataset for path in RECIPES}
    assert names == {"basicmotions", "wisdm_v1", "wisdm2019", "daphnet", "goat", "pvs"}


def test_bad_modes_fail_before_any_data_is_read():
    with pytest.raises(ValueError, match="modes must be among"):
        load_config(RECIPES[0], ["modes=('linear','probe')"], checks=validate_finetune)
    with pytest.raises(ValueError, match="finetune epochs"):
        load_config(RECIPES[0], ["finetune.epochs=0"], checks=validate_finetune)


@pytest.mark.parametrize("recipe", sorted(SHARED))
def test_recipe_on_the_real_copy_supports_ten_shots_in_every_fold(recipe):
    folder = next((p / "shared" / "datasets" / SHARED[recipe]
                   for p in Path(__file__).resolve().parents
                   if (p / "shared" / "datasets" / SHARED[recipe]).is_dir()), None)
    if folder is None:
        pytest.skip(f"shared/datasets/{SHARED[recipe]} is not beside this checkout")
    config = load_config(CONFIGS / recipe, [f"data.data_dir={folder}"], checks=validate_finetune)
    dataset = load_dataset(config.data.dataset, config.data.data_dir)
    windows = make_windows(dataset, seconds=config.data.seconds,
                           sample_rate=config.data.sample_rate, label_rule=config.data.label_rule)
    for fold in subject_folds(windows, folds=config.folds, seed=config.seed):
        chosen = few_shot(windows, fold.train, 10, seed=0, fold=fold.index)
        assert len(chosen) == 10 * len(windows.classes)
        assert len(fold.test) and len(fold.validation)
