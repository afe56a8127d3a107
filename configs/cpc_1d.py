"""CPC (1D), the paper's sensor baseline after Haresamudram et al.'s CPC for HAR
(methods/cpc_1d.py): the 1D encoder's convolutions as the latents, a 2-layer GRU of 256
units as the context network, InfoNCE over 28 future steps; Adam at 5e-4, batch 64, as
their code's defaults.

Out of the box it pre-trains on the BasicMotions that ships with sktime (5 s windows, 50 %
overlap, 50 epochs); the paper's corpus is Capture-24 (`--config.data.dataset=capture24
--config.data.data_dir=CAPTURE24`), one model per window length. A 2 s window gives 55 latent
steps, enough for 28 ahead.
"""

from img2imu_jax.config import sensor_config


def get_config():
    config = sensor_config("cpc_1d")
    config.optim.base_lr = 5e-4
    return config
