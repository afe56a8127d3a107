"""The paper's pre-training (IMG2IMU v2 §III-B): MoCo with a ResNet-18 on ImageNet
squashed to 96 × 128, the sensor-aware augmentations, feature dimension 64, a queue of 4096,
batch 256, 40 epochs, Adam.

The paper's learning rate, Adam at 1e-6, barely moves a ResNet-18 trained from scratch in 40
epochs (and v1 says SGD at the same rate), so the default here is Adam at 1e-3 with a short
warm-up and cosine decay; `--config.optim.base_lr=1e-6` reproduces the published number. τ, the
key-encoder momentum and the head are unreported: MoCo v2's τ = 0.2, m = 0.999 and 2-layer MLP.

    img2imu prepare --dataset imagenet2012 --data-dir DATA --out-dir PREPARED
    img2imu pretrain --config img2imu_paper --workdir runs/paper \\
        --config.data.dataset=imagenet2012_96x128 --config.data.data_dir=PREPARED
"""

from img2imu_jax.config import base_config


def get_config():
    config = base_config()
    config.optim.base_lr = 1e-3
    config.optim.warmup_epochs = 1.0
    return config
