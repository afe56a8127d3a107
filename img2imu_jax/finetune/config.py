"""Fine-tuning configs: the defaults every `finetune_*` recipe starts from, and the checks a
config passes before any data is read (recipes load with `img2imu_jax.config.load_config(...,
checks=validate_finetune)`).
"""

from __future__ import annotations

import dataclasses

import ml_collections

from img2imu_jax.finetune.protocol import LINEAR_PROTOCOLS, MODES, TUNED_LRS
from img2imu_jax.finetune.training import FullFinetune
from img2imu_jax.imu.registry import DATASETS
from img2imu_jax.imu.windows import LABEL_RULES
from img2imu_jax.models import ENCODERS
from img2imu_jax.torch_weights import torchvision_init


def finetune_base_config() -> ml_collections.ConfigDict:
    """Defaults of the downstream protocol (paper v2 §IV-A); recipes name the dataset."""
    config = ml_collections.ConfigDict()
    config.seed = 0
    config.pretrained = ""  # a pre-training checkpoints/ directory; '' = random init only
    config.data = ml_collections.ConfigDict()
    config.data.dataset = "basicmotions"
    config.data.data_dir = ""  # for 'generic': the CSV or NPZ file itself
    config.data.generic_sample_rate = 0.0  # Hz of a 'generic' file; datasets know their own
    config.data.sample_rate = 50.0
    config.data.seconds = 5.0  # 2, 5 or 10 s windows, 50 % overlap
    config.data.label_rule = "single"
    config.shots = (1, 2, 5, 10, 20, 50)
    config.folds = 5
    # The paper's spectrogram grid, searched on validation subjects: every nfft with
    # noverlap = nfft - gap for every gap.
    config.grid_nfft = (32, 64, 128, 256)
    config.grid_gaps = (2, 4, 8, 16)
    config.epochs = 50  # of the linear head
    config.linear_lr = 1e-5  # the head's peak learning rate (warm-up from /1000, cosine to /10)
    # 'tuned' (recommended): the peak rate chosen from `lrs` per encoder and fold on the
    # validation subjects, jointly with the spectrogram setting; 'paper': `linear_lr` fixed.
    config.linear = ml_collections.ConfigDict()
    config.linear.protocol = "tuned"
    config.linear.lrs = TUNED_LRS
    config.linear.standardize = False  # features standardised with the n-shot set's statistics
    # 'linear' (frozen encoder, v2) and/or 'finetune' (v1's two phases, settings below).
    config.modes = ("linear",)
    config.finetune_shots = ()  # shot counts of the full fine-tune; () = the same as shots
    config.finetune = ml_collections.ConfigDict(dataclasses.asdict(FullFinetune()))
    config.save_models = True  # per encoder and mode: the best-validation fold's classifier
    config.model = ml_collections.ConfigDict()
    # 'resnet' (spectrogram images, `depth` and `width`) or 'sensor_cnn' (the 1D encoder on
    # windows normalised with the pre-training corpus's mean and std, `fc_features` wide).
    config.model.encoder = "resnet"
    config.model.depth = 18
    config.model.width = 64
    config.model.fc_features = 256
    config.compilation_cache_dir = "~/.cache/img2imu/jax"  # '' = off; the env var wins
    # 'torchvision:PATH': also evaluate an encoder from a torchvision state_dict on disk (the
    # paper's "ImageNet-supervised" row with torchvision's ImageNet weights)
    config.init = ""
    return config


def validate_finetune(config: ml_collections.ConfigDict) -> None:
    """Checks a downstream config before any data is read."""
    if not config.modes or not set(config.modes) <= set(MODES):
        raise ValueError(f"invalid config: modes must be among {MODES}; got {config.modes}")
    if config.finetune.epochs < 1 or config.finetune.head_epochs < 1 \
            or config.finetune.batch_size < 1:
        raise ValueError("invalid config: finetune epochs, head_epochs, batch_size must be >= 1")
    if config.data.dataset not in DATASETS:
        raise ValueError(f"invalid config: data.dataset must be one of {DATASETS}")
    if not config.shots or min(config.shots + config.finetune_shots) < 1:
        raise ValueError(f"invalid config: shots must be positive; got {config.shots}")
    if config.folds < 3 or config.epochs < 1 or config.data.seconds <= 0:
        raise ValueError("invalid config: folds >= 3, epochs >= 1 and data.seconds > 0")
    if config.linear.protocol not in LINEAR_PROTOCOLS or not config.linear.lrs \
            or min(config.linear.lrs) <= 0:
        raise ValueError(f"invalid config: linear.protocol must be one of {LINEAR_PROTOCOLS} "
                         f"and linear.lrs positive; got {config.linear.protocol!r}, "
                         f"{config.linear.lrs}")
    if not all(0 < gap < nfft for nfft in config.grid_nfft for gap in config.grid_gaps):
        raise ValueError("invalid config: every grid gap must be in (0, nfft)")
    if not config.data.sample_rate > 0 or config.data.generic_sample_rate < 0:
        raise ValueError(f"invalid config: data.sample_rate must be > 0 Hz (got "
                         f"{config.data.sample_rate}) and data.generic_sample_rate >= 0")
    if config.data.label_rule not in LABEL_RULES:
        raise ValueError(f"invalid config: data.label_rule must be one of {LABEL_RULES}; got "
                         f"{config.data.label_rule!r}")
    if not config.linear_lr > 0:
        raise ValueError(f"invalid config: linear_lr must be > 0; got {config.linear_lr}")
    if config.model.encoder not in ENCODERS:
        raise ValueError(f"invalid config: model.encoder must be one of {ENCODERS}; got "
                         f"{config.model.encoder!r}")
    if config.model.encoder != "resnet" and config.get("init", ""):
        raise ValueError("invalid config: init (torchvision weights) needs model.encoder "
                         "'resnet'")
    torchvision_init(config.get("init", ""))
