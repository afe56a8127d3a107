"""The evaluation half of `img2imu demo`: the paper's protocol on BasicMotions (real smartwatch
data that ships with sktime) at laptop scale.

Linear evaluation at 1, 2, 5 and 10 shots over the paper's full spectrogram grid, and the
two-phase full fine-tune at 10 shots with a shortened second phase (50 epochs instead of 100)
so the whole demo stays near ten minutes on two CPU cores. The encoder's depth and width come
from the pre-training config (img2imu_jax/configs/demo.py).

BasicMotions is recorded at 10 Hz; the paper's protocol resamples every dataset to 50 Hz, so
everything above 5 Hz (the top 80 % of every image) is the resampling filter's floor, which the
report marks. Staying at 10 Hz with the paper's grid converted to seconds (nfft 8, 16, 32;
gaps 1, 2, 4) was measured and is worse, so the demo keeps the paper's 50 Hz: random-init
encoder (width 16), linear evaluation, both in one session on two shared CPU cores —

    | data.sample_rate, grid       | 1-shot     | 2-shot     | 5-shot      | 10-shot    |
    | 50 Hz, nfft 32-256, gaps 2-16 | 43.7 ± 3.6 | 58.2 ± 4.4 | 67.4 ± 12.7 | 73.5 ± 9.4 |
    | 10 Hz, nfft 8-32, gaps 1-4    | 33.4 ± 4.0 | 36.4 ± 1.5 | 47.8 ± 6.7  | 63.5 ± 7.5 |

(`img2imu finetune --config demo_finetune --config.modes="('linear',)"
--config.model.width=16`, plus `--config.data.sample_rate=10.0 --config.grid_nfft="(8,16,32)"
--config.grid_gaps="(1,2,4)"` for the second row; 570 s and 287 s.)

The head's peak learning rate is chosen per encoder and fold on the validation cases (the
default 'tuned' protocol); with `--config.linear.protocol=paper` it is `linear_lr`, 1e-2 here,
not the paper's 1e-5: with these narrow encoders
(128 features of magnitude ~1) 50 epochs at 1e-5 leave the head at its random initialisation
— measured on BasicMotions with a random encoder: macro-F1 9.5 % (one class predicted) at
1e-5, 20 % at 1e-4, 49 % at 1e-3, 72 % at 1e-2.
"""

from img2imu_jax.finetune.config import finetune_base_config


def get_config():
    config = finetune_base_config()
    config.data.dataset = "basicmotions"
    config.shots = (1, 2, 5, 10)
    config.modes = ("linear", "finetune")
    config.finetune_shots = (10,)
    config.finetune.epochs = 50
    config.linear_lr = 1e-2
    return config
