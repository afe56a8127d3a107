"""The paper's protocol on Daphnet freezing of gait: ankle sensor, freeze vs no freeze.

The paper does not say its window length; 2 s here (freezing episodes last seconds) with the
`majority` label rule, since `single` would drop most windows that touch an episode's edge.

    img2imu finetune --config finetune_daphnet --workdir runs/ft_daphnet \\
        --config.data.data_dir=PATH/dataset_fog_release/dataset \\
        --config.pretrained=runs/paper/checkpoints
"""

from img2imu_jax.finetune.config import finetune_base_config


def get_config():
    config = finetune_base_config()
    config.data.dataset = "daphnet"
    config.data.seconds = 2.0
    config.data.label_rule = "majority"
    return config
