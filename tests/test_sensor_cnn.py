"""The 1D sensor encoder: its output shape, its receptive field and how configs build it."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from img2imu_jax.config import base_config
from img2imu_jax.methods import build
from img2imu_jax.models import SensorCNN, build_encoder


def test_windows_map_to_fc_features_and_frames_lose_the_valid_convolutions_edges():
    encoder = SensorCNN(fc_features=40, rngs=nnx.Rngs(0))
    windows = jax.random.normal(jax.random.key(0), (5, 100, 3))
    assert encoder(windows).shape == (5, 40) and encoder.features == 40
    # 'valid' stride-1 convolutions of kernels 24, 16, 8 drop 23 + 15 + 7 samples.
    assert encoder.frames(windows).shape == (5, 100 - 23 - 15 - 7, 96)
    assert np.all(np.asarray(encoder(windows)) >= 0)  # the FC layer ends in a ReLU
    with pytest.raises(ValueError, match="receptive field of 46"):
        encoder(windows[:, :45])
    with pytest.raises(ValueError, match=r"\[batch, time, 3\]"):
        encoder(windows[..., :2])


def test_one_frame_depends_on_exactly_its_46_input_samples():
    encoder = SensorCNN(fc_features=8, rngs=nnx.Rngs(1))
    windows = jax.random.normal(jax.random.key(1), (1, 120, 3))
    frame = 30
    # Summed over channels, so a ReLU that happens to be off for one channel hides nothing.
    gradient = jax.grad(lambda x: encoder.frames(x)[0, frame].sum())(windows)
    reached = np.flatnonzero(np.abs(np.asarray(gradient[0])).sum(axis=-1) > 0)
    # Independently: output frame t of stride-1 valid convolutions k1, k2, k3 reads inputs
    # t … t + (k1 − 1) + (k2 − 1) + (k3 − 1).
    span = (24 - 1) + (16 - 1) + (8 - 1)
    np.testing.assert_array_equal(reached, np.arange(frame, frame + span + 1))
    assert encoder.receptive_field == span + 1 == 46


def test_dropout_acts_only_when_given_a_key():
    encoder = SensorCNN(fc_features=16, rngs=nnx.Rngs(2))
    windows = jax.random.normal(jax.random.key(2), (4, 60, 3))
    np.testing.assert_array_equal(encoder(windows), encoder(windows))
    key = jax.random.key(3)
    np.testing.assert_array_equal(encoder(windows, dropout_key=key),
                                  encoder(windows, dropout_key=key))
    assert not np.allclose(encoder(windows, dropout_key=key), encoder(windows))
    assert not any(isinstance(v, nnx.BatchStat) for _, v in nnx.iter_graph(encoder))


def test_a_config_naming_sensor_cnn_builds_it_under_the_checkpoints_encoder_key():
    config = base_config()
    config.model.encoder = "sensor_cnn"
    config.model.fc_features = 32
    model = build(config, bn_axis_name=None)
    assert isinstance(model.encoder, SensorCNN) and model.encoder.features == 32
    features, projections = model(jnp.zeros((2, 50, 3)))
    assert features.shape == (2, 32) and projections.shape == (2, config.model.out_features)
    assert set(nnx.state(model).keys()) == {"encoder", "head"}
    with pytest.raises(ValueError, match="sensor_cnn"):
        build_encoder("lstm", rngs=nnx.Rngs(0))
