"""The paper's protocol on WISDM v1.1 (Kwapisz et al. 2011), the paper's 'WISDM' column:
36 users, 6 activities, 20 Hz, 10 s windows as in the original publication.

    img2imu finetune --config finetune_wisdm_v1 --workdir runs/ft_wisdm \\
        --config.data.data_dir=PATH/WISDM_ar_v1.1 --config.pretrained=runs/paper/checkpoints
"""

from img2imu_jax.finetune.config import finetune_base_config


def get_config():
    config = finetune_base_config()
    config.data.dataset = "wisdm_v1"
    config.data.seconds = 10.0
    return config
