"""SimSiam as the paper's baseline (Table II, "official implementation and settings, with its
own augmentations"): facebookresearch/simsiam's ImageNet recipe on the paper's ResNet-18 and
96 × 128 images. Projector: 3 bias-free Linear + BN layers to 2048 (SimSiam's output BN has
no scale; ours keeps one, as the SimCLR head); predictor 2048 → 512 → 2048; SGD, lr 0.05 ×
batch/256, momentum 0.9, weight decay 1e-4, cosine, no warm-up; MoCo v2's augmentations,
which SimSiam uses. Epochs as the paper's pre-training (40) so the baselines share a budget.

    img2imu pretrain --config configs/simsiam.py --workdir runs/simsiam \\
        --config.data.dataset=imagenet2012_96x128 --config.data.data_dir=PREPARED
"""

from img2imu_jax.config import base_config


def get_config():
    config = base_config()
    config.method = "simsiam"
    config.augment.spec = "mocov2"
    config.model.head = "simclr"
    config.model.head_layers = 3
    config.model.hidden_features = 2048
    config.model.out_features = 2048
    config.simsiam.predictor_features = 512
    config.optim.name = "sgd"
    config.optim.base_lr = 0.05
    config.optim.lr_scaling = "linear"
    config.optim.weight_decay = 1e-4
    config.optim.momentum = 0.9
    return config
