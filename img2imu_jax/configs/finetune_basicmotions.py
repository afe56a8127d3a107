"""Linear evaluation on BasicMotions (real smartwatch data that ships with sktime), the paper's
v2 protocol at small scale: 5 s windows at 50 Hz, 5 case-wise folds, 1–10 shots per class.

    img2imu finetune --config finetune_basicmotions --workdir runs/ft \\
        --config.pretrained=runs/paper/checkpoints
"""

from img2imu_jax.finetune.config import finetune_base_config


def get_config():
    config = finetune_base_config()
    config.data.dataset = "basicmotions"
    config.shots = (1, 2, 5, 10)
    return config
