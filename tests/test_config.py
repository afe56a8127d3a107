"""Recipes by name, `--config.` overrides of free-form keys, and the checks before any data."""

import numpy as np
import pytest

from img2imu_jax import cli
from img2imu_jax.config import RECIPES, load_config


def test_a_recipe_name_loads_the_bundled_file():
    by_name = load_config("img2imu_paper")
    assert by_name.to_dict() == load_config(RECIPES / "img2imu_paper.py").to_dict()
    assert load_config("configs/demo.py").to_dict() == load_config("demo").to_dict()
    with pytest.raises(ValueError, match="img2imu_papr is neither a file nor a bundled recipe; "
                                         "did you mean img2imu_paper"):
        load_config("img2imu_papr")


def test_several_augmentation_params_from_the_command_line():
    config = load_config("demo", ["augment.params.jitter_amplitude=0.35",
                                  "augment.params.permute_x_segments=8"])
    assert dict(config.augment.params) == {"jitter_amplitude": 0.35, "permute_x_segments": 8}
    with pytest.raises(ValueError, match=r"unknown augmentation parameter 'jitter_sigma'; valid "
                                         r"for spec .*: translate_x_max_fraction, .*jitter_p"):
        load_config("demo", ["augment.params.jitter_sigma=1"])
    with pytest.raises(ValueError, match=r"hue_p must be .*; got 2"):
        load_config("demo", ["augment.params.hue_p=2"])


@pytest.mark.parametrize("dataset, message", [
    ("imagnet2012", "did you mean imagenet2012"),
    ("/no/such/folder", "image folder /no/such/folder does not exist"),
])
def test_an_unknown_image_source_is_one_line_before_any_data(tmp_path, capsys, dataset, message):
    pytest.importorskip("tensorflow_datasets")
    workdir = tmp_path / "w"
    argv = ["pretrain", "--config", "demo", "--workdir", str(workdir),
            f"--config.data.dataset={dataset}", f"--config.data.data_dir={tmp_path}"]
    assert cli.main(argv) == 1
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not workdir.exists()


def test_a_nan_sample_blanks_only_its_own_channel_as_documented():
    from img2imu_jax.spectrogram import spectrogram_image

    window = np.random.default_rng(0).normal(size=(200, 3)).astype(np.float32)
    window[50, 1] = np.nan
    image = np.asarray(spectrogram_image(window, sample_rate=50.0, nfft=32, noverlap=24,
                                         image_size=(16, 16)))
    assert np.isnan(image[..., 1]).all()
    assert np.isfinite(image[..., [0, 2]]).all()


@pytest.mark.parametrize("recipe, override, message", [
    ("demo", "keep_checkpoints=0", "keep_checkpoints must be >= 1"),
    ("demo", "optim.weight_decay=-1e-4", "optim.weight_decay, warmup_epochs and momentum"),
    ("demo_finetune", "data.sample_rate=0", "data.sample_rate must be > 0 Hz"),
    ("demo_finetune", "data.label_rule=mode", "data.label_rule must be one of"),
])
def test_out_of_range_values_are_rejected_at_load(recipe, override, message):
    from img2imu_jax.config import validate
    from img2imu_jax.finetune.config import validate_finetune

    checks = validate_finetune if recipe.endswith("finetune") else validate
    with pytest.raises(ValueError, match=message):
        load_config(recipe, [override], checks=checks)
