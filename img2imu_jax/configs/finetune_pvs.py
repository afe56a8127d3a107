"""The paper's protocol on PVS, Passive Vehicular Sensors (Menegazzo & von Wangenheim 2020):
road surface (asphalt, dirt, cobblestone) from vehicle-mounted accelerometers.

The paper does not say its window length; 5 s here. Three vehicles cannot fill five
subject-wise folds, so the loader makes each trip a subject and folds never share a trip.

    img2imu finetune --config finetune_pvs --workdir runs/ft_pvs \\
        --config.data.data_dir=PATH/pvs --config.pretrained=runs/paper/checkpoints
"""

from img2imu_jax.finetune.config import finetune_base_config


def get_config():
    config = finetune_base_config()
    config.data.dataset = "pvs"
    config.data.seconds = 5.0
    return config
