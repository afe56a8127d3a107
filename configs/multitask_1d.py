"""Multi-task self-supervision (1D), the paper's sensor baseline after Saeed et al. 2019
(methods/multitask_1d.py): the 1D encoder, one binary head per signal transformation (all
eight), Adam at 3e-4 as Saeed et al.'s transformation-prediction network.

Out of the box it pre-trains on the BasicMotions that ships with sktime (5 s windows, 50 %
overlap, 50 epochs); the paper's corpus is Capture-24 (`--config.data.dataset=capture24
--config.data.data_dir=CAPTURE24`), one model per window length (`data.seconds` 2, 5 or 10).
"""

from img2imu_jax.config import sensor_config


def get_config():
    config = sensor_config("multitask_1d")
    config.optim.base_lr = 3e-4
    return config
