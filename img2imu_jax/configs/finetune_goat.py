"""The paper's protocol on Goat Movement (Kamminga et al. 2018): 5 goats, 4 classes.

The paper does not say its window length; 2 s here (short gait cycles at 100 Hz). With only 5
goats, each fold tests on one goat and validates on another.

    img2imu finetune --config finetune_goat --workdir runs/ft_goat \\
        --config.data.data_dir=PATH/goat --config.pretrained=runs/paper/checkpoints
"""

from img2imu_jax.finetune.config import finetune_base_config


def get_config():
    config = finetune_base_config()
    config.data.dataset = "goat"
    config.data.seconds = 2.0
    return config
