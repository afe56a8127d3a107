"""The evaluation half of `img2imu demo`: the paper's protocol on BasicMotions (real smartwatch
data that ships with sktime) at laptop scale.

Linear evaluation at 1, 2, 5 and 10 shots over the paper's full spectrogram grid, and the
two-phase full fine-tune at 10 shots with a shortened second phase (50 epochs instead of 100)
so the whole demo stays near ten minutes on two CPU cores. The encoder's depth and width come
from the pre-training config (img2imu_jax/configs/demo.py).

The head's peak learning rate is 1e-2, not the paper's 1e-5: with these narrow encoders
(128 features of magnitude ~1) 50 epochs at 1e-5 leave the head at its random initialisation
— measured on BasicMotions with a random encoder: macro-F1 9.5 % (one class predicted) at
1e-5, 20 % at 1e-4, 49 % at 1e-3, 72 % at 1e-2.
"""

from img2imu_jax.config import finetune_base_config


def get_config():
    config = finetune_base_config()
    config.data.dataset = "basicmotions"
    config.shots = (1, 2, 5, 10)
    config.modes = ("linear", "finetune")
    config.finetune_shots = (10,)
    config.finetune.epochs = 50
    config.linear_lr = 1e-2
    return config
