"""SimCLR (1D), the paper's sensor baseline after Tang et al. 2020 (methods/simclr_1d.py): the
1D encoder with Tang et al.'s 3-layer head (256 hidden, 50 out), temperature 0.1, SGD at 0.1
with cosine decay and Keras' plain SGD (no momentum), their L2 of 1e-4 as weight decay.

Out of the box it pre-trains on the BasicMotions that ships with sktime (5 s windows, 50 % overlap,
50 epochs as the paper's pre-training), a few minutes on a CPU. The paper's corpus is
Capture-24, one model per window length:

    img2imu pretrain --config simclr_1d --workdir runs/simclr_1d_5s \\
        --config.data.dataset=capture24 --config.data.data_dir=CAPTURE24 --config.batch_size=1024

Several datasets form one corpus when joined by ',' in `data.dataset` and `data.data_dir`.
"""

from img2imu_jax.config import sensor_config


def get_config():
    config = sensor_config("simclr_1d")
    config.model.head = "mocov2"  # plain MLP with biases, as Tang et al.'s Dense layers
    config.model.head_layers = 3
    config.model.hidden_features = 256
    config.model.out_features = 50
    config.temperature = 0.1
    config.optim.name = "sgd"
    config.optim.base_lr = 0.1
    config.optim.momentum = 0.0
    config.optim.weight_decay = 1e-4
    return config
