"""Each sensor transformation's defining property, checked with numpy on jitted batches."""

import itertools

import jax
import numpy as np
import pytest
import scipy.interpolate

from img2imu_jax import sensor_transforms as st

KEY = jax.random.key(7)
WINDOWS = np.asarray(jax.random.normal(jax.random.key(1), (16, 60, 3)))
INDICES = np.arange(16)


def run(name, windows=WINDOWS, key=KEY):
    return np.asarray(jax.jit(st.make_sensor_transform(name))(key, windows, INDICES[:len(windows)]))


def test_rotation_keeps_each_samples_norm_and_the_angles_between_samples():
    out = run("rotation")
    np.testing.assert_allclose(np.linalg.norm(out, axis=-1), np.linalg.norm(WINDOWS, axis=-1),
                               rtol=1e-5)
    for x, y in zip(WINDOWS, out):  # one orthogonal map per window: Gram matrices agree
        np.testing.assert_allclose(y @ y.T, x @ x.T, atol=1e-4)
        rotation, *_ = np.linalg.lstsq(x, y, rcond=None)
        assert np.linalg.det(rotation) == pytest.approx(1.0, abs=1e-4)  # proper, not a mirror
    assert not np.allclose(out, WINDOWS, atol=1e-2)


def test_negation_time_flip_and_channel_shuffle():
    np.testing.assert_array_equal(run("negation"), -WINDOWS)
    np.testing.assert_array_equal(run("time_flip"), WINDOWS[:, ::-1])
    shuffled = run("channel_shuffle")
    seen = set()
    for x, y in zip(WINDOWS, shuffled):
        orders = [p for p in itertools.permutations(range(3)) if np.array_equal(y, x[:, p])]
        assert len(orders) == 1 and orders[0] != (0, 1, 2)  # a real permutation of the axes
        seen.add(orders[0])
    assert len(seen) > 2  # different windows, different orders


def test_permutation_keeps_the_multiset_of_samples_in_a_few_contiguous_runs():
    ramp = np.repeat(np.arange(60, dtype=np.float32)[None, :, None], 16, 0) * np.ones(3, np.float32)
    ramp = ramp + np.arange(16, dtype=np.float32)[:, None, None] * 1000
    out = run("permutation", ramp)
    moved = 0
    for x, y in zip(ramp, out):
        np.testing.assert_array_equal(np.sort(y[:, 0]), np.sort(x[:, 0]))  # same samples
        np.testing.assert_array_equal(y, np.repeat(y[:, :1], 3, 1))  # whole samples moved
        breaks = np.count_nonzero(np.diff(y[:, 0]) != 1)
        assert breaks <= st.PERMUTATION_CUTS  # at most 5 segments, each in its own order
        moved += breaks > 0
    assert moved > 8


def test_scaling_multiplies_each_axis_by_one_factor_near_one():
    positive = np.abs(WINDOWS) + 0.5
    out = run("scaling", positive)
    ratio = out / positive
    np.testing.assert_allclose(ratio, np.broadcast_to(ratio[:, :1], ratio.shape), rtol=1e-5)
    factors = ratio[:, 0]
    assert abs(factors.mean() - 1) < 0.1 and 0.03 < factors.std() < 0.3
    assert np.ptp(factors, axis=1).min() > 0  # per axis, not one factor per window


def test_jitter_adds_zero_mean_noise_of_sigma_005():
    noise = run("jitter", np.zeros((16, 600, 3), np.float32))
    assert abs(noise.mean()) < 0.005 and noise.std() == pytest.approx(0.05, rel=0.05)


def test_time_warp_keeps_endpoints_and_order_and_follows_scipys_spline():
    ramp = np.broadcast_to(np.linspace(-1, 2, 60, dtype=np.float32)[None, :, None],
                           (16, 60, 3)).copy()
    out = run("time_warp", ramp)
    np.testing.assert_allclose(out[:, [0, -1]], ramp[:, [0, -1]], atol=1e-6)
    assert np.all(np.diff(out, axis=1) >= -1e-6)  # a monotone signal stays monotone
    assert not np.allclose(out, ramp, atol=1e-2)
    assert not np.allclose(out[..., 0], out[..., 1])  # each axis has its own warp
    # The basis reproduces scipy's not-a-knot spline through arbitrary knot values.
    knots = np.random.default_rng(0).normal(1, 0.2, 6)
    positions = np.arange(6) * 59 / 5
    np.testing.assert_allclose(st._spline_basis(60, 4) @ knots,
                               scipy.interpolate.CubicSpline(positions, knots)(np.arange(60)),
                               atol=1e-5)


def test_views_depend_on_the_global_index_not_the_batch_split_and_specs_are_checked():
    fn = jax.jit(st.make_sensor_transform("rotation|time_warp|jitter"))
    whole = np.asarray(fn(KEY, WINDOWS, INDICES))
    second_half = np.asarray(fn(KEY, WINDOWS[8:], INDICES[8:]))
    np.testing.assert_allclose(second_half, whole[8:], atol=1e-4)  # same draws; float noise
    with pytest.raises(ValueError, match="unknown sensor transformation 'rotate'"):
        st.make_sensor_transform("rotate|jitter")
    with pytest.raises(ValueError, match="empty"):
        st.make_sensor_transform(" ")
