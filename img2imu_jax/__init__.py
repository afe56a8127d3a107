"""IMG2IMU in JAX: contrastive image pre-training for few-shot IMU classification."""

__version__ = "0.1.0"
