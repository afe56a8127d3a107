"""The paper's protocol on WISDM 2019 (UCI 507), the watch or phone accelerometer files.

10 s windows as in Kwapisz et al.'s WISDM work; classes are the activity codes present.

    img2imu finetune --config finetune_wisdm2019 --workdir runs/ft_wisdm2019 \\
        --config.data.data_dir=PATH/wisdm-dataset/raw/watch/accel \\
        --config.pretrained=runs/paper/checkpoints
"""

from img2imu_jax.finetune.config import finetune_base_config


def get_config():
    config = finetune_base_config()
    config.data.dataset = "wisdm2019"
    config.data.seconds = 10.0
    return config
