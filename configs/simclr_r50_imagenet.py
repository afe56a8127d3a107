"""SimCLR's ImageNet recipe on our stack: NT-Xent with negatives from every device, ResNet-50,
3-layer BN projection head to 128, LARS (lr 0.3 × batch/256, weight decay 1e-6, biases and BN
excluded), 10 warm-up epochs then cosine, batch 4096, 100 epochs, τ = 0.1 (SimCLR v2 defaults).
"""

from img2imu_jax.config import base_config


def get_config():
    config = base_config()
    config.method = "simclr"
    config.temperature = 0.1
    config.model.depth = 50
    config.model.head = "simclr"
    config.model.head_layers = 3
    config.model.out_features = 128
    config.optim.name = "lars"
    config.optim.base_lr = 0.3
    config.optim.lr_scaling = "linear"
    config.optim.warmup_epochs = 10.0
    config.optim.weight_decay = 1e-6
    config.batch_size = 4096
    config.epochs = 100.0
    return config
