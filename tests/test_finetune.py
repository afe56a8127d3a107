"""Linear evaluation: frozen features in one jitted pass, the paper's head schedule, a head
that separates separable features."""

import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from img2imu_jax.finetune import extract_features, linear_schedule, predict, train_linear_head
from img2imu_jax.imu.protocol import macro_f1
from img2imu_jax.models.resnet import ResNet
from img2imu_jax.spectrogram import normalize_imagenet, spectrogram_image


@pytest.fixture(scope="module")
def encoder():
    return ResNet(18, width=8, rngs=nnx.Rngs(0))


def test_features_match_the_encoder_on_each_window_whatever_the_batch(encoder):
    windows = np.random.default_rng(0).normal(size=(5, 250, 3)).astype(np.float32)
    settings = dict(sample_rate=50.0, nfft=64, noverlap=56)
    batched = extract_features(encoder, windows, batch_size=4, **settings)
    assert batched.shape == (5, encoder.features)
    np.testing.assert_allclose(extract_features(encoder, windows, batch_size=16, **settings),
                               batched, rtol=1e-5, atol=1e-6)
    encoder.eval()
    one = encoder(normalize_imagenet(spectrogram_image(jnp.asarray(windows[:1]), **settings)))
    np.testing.assert_allclose(batched[:1], one, rtol=1e-4, atol=1e-5)


def test_the_paper_schedule():
    schedule = linear_schedule(steps_per_epoch=3)
    assert float(schedule(0)) == pytest.approx(1e-8)
    assert float(schedule(30)) == pytest.approx(1e-5)
    assert float(schedule(150)) == pytest.approx(1e-6)
    assert 1e-6 < float(schedule(90)) < 1e-5


def test_a_linear_head_separates_separable_features():
    rng = np.random.default_rng(1)
    centres = rng.normal(size=(4, 16)) * 3
    labels = np.repeat(np.arange(4), 10)
    features = centres[labels] + rng.normal(size=(40, 16)) * 0.3
    head = train_linear_head(features, labels, 4, seed=0, epochs=40,
                             schedule=optax.constant_schedule(0.05))
    assert macro_f1(labels, predict(head, features)) == 1.0
    untrained = train_linear_head(features, labels, 4, seed=0, epochs=1,
                                  schedule=optax.constant_schedule(0.0))
    assert macro_f1(labels, predict(untrained, features)) < 1.0
