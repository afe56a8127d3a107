"""About three minutes of MoCo on two CPU cores: the bundled photos, a narrow ResNet-18,
small batches (the first stage of `img2imu demo`).

It shows every part working (augmentations, queue, checkpoints, metrics); pre-training worth
transferring needs ImageNet and the paper's scale (configs/img2imu_paper.py).
"""

from img2imu_jax.config import base_config


def get_config():
    config = base_config()
    config.data.dataset = "bundled_photos"
    config.data.shuffle_buffer = 64
    config.model.width = 16
    config.moco.queue_size = 256
    # Two ghost groups per batch of 16: with the default 32, the key encoder's one group is the
    # whole batch and Shuffle BN changes nothing (the trainer warns).
    config.moco.bn_group_size = 8
    config.batch_size = 16
    config.total_steps = 150
    config.checkpoint_every = 50
    config.log_every = 10
    # Few-shot F1 against step for the report: BasicMotions' test subjects, and its validation
    # subjects (the validation probe's default, WISDM 2019, is not on every machine).
    config.evals.probe.every = 50
    config.evals.val_probe.every = 50
    config.evals.val_probe.dataset = "basicmotions"
    config.optim.warmup_epochs = 0.0
    return config
