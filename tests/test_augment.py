"""Augmentations on real photos: defining properties, PIL/scipy/matplotlib references, PRNGs."""

import functools
import itertools
import math

import jax
import jax.numpy as jnp
import matplotlib.colors
import numpy as np
import pytest
import scipy.ndimage
import skimage.data
from jax.sharding import NamedSharding, PartitionSpec
from PIL import Image, ImageEnhance, ImageOps
from scipy.spatial.transform import Rotation
from sklearn.datasets import load_sample_images

from img2imu_jax.augment import backend, chain, colour, photo, sensor
from img2imu_jax.augment import SENSOR_DEFAULTS, make_augment
from img2imu_jax.augment_grid import ORIGINAL_GAP, augment_grid

HEIGHT, WIDTH = 96, 128
SENSOR = "translate_x|permute_x|hue|jitter"
KEY = jax.random.key(0)


@pytest.fixture(scope="module")
def photos():
    """Four real photos resized to 96 × 128, float32 in [0, 1], quantised to 8 bits as decoded."""
    arrays = [skimage.data.astronaut(), skimage.data.chelsea(), skimage.data.coffee()]
    arrays.append(load_sample_images().images[0])
    small = [Image.fromarray(a).resize((WIDTH, HEIGHT), Image.BILINEAR) for a in arrays]
    return np.stack([np.asarray(image) for image in small]).astype(np.float32) / 255


@functools.cache
def augment(spec, **params):
    """One jitted function per (spec, params): each compiles once per shape for the whole module."""
    return jax.jit(make_augment(spec, **params))


def views(spec, images, key=KEY, **params):
    """Views with explicit indices 0…B-1, so every test of a spec shares one compiled function."""
    return np.asarray(augment(spec, **params)(key, images, jnp.arange(len(images))))


def pil(image):
    return Image.fromarray(np.round(np.asarray(image) * 255).astype(np.uint8))


def from_pil(image):
    return np.asarray(image, np.float32) / 255


# The four sensor-aware ops ----------------------------------------------------------------------


def signed_roll(source, target):
    """The shift s with target == np.roll(source, s, axis=1), in (-W/2, W/2], or None."""
    width = source.shape[1]
    for shift in range(width):
        if np.array_equal(np.roll(source, shift, axis=1), target):
            return shift if shift <= width // 2 else shift - width
    return None


def test_translate_x_rolls_whole_rows_by_one_shift_within_its_range(photos):
    shifts = []
    for seed in range(4):
        out = views("translate_x", photos, jax.random.key(seed), translate_x_max_fraction=0.1)
        for original, view in zip(photos, out):
            shift = signed_roll(original, view)  # rows untouched, columns moved cyclically
            assert shift is not None
            shifts.append(shift)
    assert max(abs(s) for s in shifts) <= int(0.1 * WIDTH)
    assert len(set(shifts)) > 5


def source_columns(original, view):
    """For each column of `view`, the column of `original` it is; -1 if it is none of them."""
    lookup = {original[:, j].tobytes(): j for j in range(original.shape[1])}
    assert len(lookup) == original.shape[1], "test photo has repeated columns"
    return np.array([lookup.get(view[:, j].tobytes(), -1) for j in range(view.shape[1])])


def runs(columns):
    """Lengths of the maximal runs of consecutive source columns."""
    breaks = np.flatnonzero(np.diff(columns) != 1) + 1
    return np.diff(np.concatenate([[0], breaks, [len(columns)]]))


def test_permute_x_shuffles_at_most_four_segments_and_keeps_every_column_once(photos):
    shortest = int(0.25 * WIDTH / 4)
    lengths = set()
    for seed in range(3):
        for original, view in zip(photos, views("permute_x", photos, jax.random.key(seed))):
            columns = source_columns(original, view)
            np.testing.assert_array_equal(np.sort(columns), np.arange(WIDTH))  # a bijection
            assert 1 <= len(runs(columns)) <= 4
            assert runs(columns).min() >= shortest
            lengths.update(runs(columns).tolist())
    assert len(lengths) > 4  # segment lengths are random, not an equal split


def test_permute_x_with_min_share_one_cuts_equal_segments(photos):
    for original, view in zip(photos, views("permute_x", photos, permute_x_min_share=1.0)):
        columns = source_columns(original, view)
        assert set(runs(columns).tolist()) <= {32, 64, 96, 128}
        assert set(columns[::32] % 32) == {0}


def test_hue_keeps_per_pixel_brightness_and_changes_colour(photos):
    out = views("hue", photos)
    np.testing.assert_allclose(out.mean(-1), photos.mean(-1), atol=2e-6)
    assert all(np.abs(view - original).max() > 0.2 for view, original in zip(out, photos))


def test_hue_with_zero_range_is_the_identity(photos):
    np.testing.assert_array_equal(views("hue", photos, hue_max_degrees=0.0), photos)


@pytest.mark.parametrize("degrees", [37.0, -150.0])
def test_hue_is_a_rotation_about_the_grey_axis_fitted_into_the_cube(photos, degrees):
    """scipy's rotation where it stays in [0, 1]; elsewhere the same hue, desaturated to fit."""
    pixels = photos.reshape(-1, 3)
    ours = np.asarray(sensor.rotate_about_grey(jnp.asarray(pixels), math.radians(degrees)))
    axis = np.ones(3) / math.sqrt(3)
    reference = Rotation.from_rotvec(math.radians(degrees) * axis).apply(pixels)
    inside = np.all((reference >= 0) & (reference <= 1), axis=1)
    assert 0.05 < inside.mean() < 0.99  # both cases occur on these photos
    np.testing.assert_allclose(ours[inside], reference[inside], atol=2e-6)
    grey = pixels.mean(1, keepdims=True)
    np.testing.assert_allclose(ours.mean(1, keepdims=True), grey, atol=2e-6)
    ours_chroma, reference_chroma = (ours - grey)[~inside], (reference - grey)[~inside]
    shrink = np.sum(ours_chroma * reference_chroma, 1) / np.sum(reference_chroma**2, 1)
    assert np.all((shrink >= 0) & (shrink < 1))
    np.testing.assert_allclose(ours_chroma, shrink[:, None] * reference_chroma, atol=2e-6)
    on_face = np.any((ours[~inside] <= 1e-6) | (ours[~inside] >= 1 - 1e-6), axis=1)
    assert on_face.all()  # shrunk only as far as needed to fit


def test_hue_at_120_degrees_permutes_the_channels(photos):
    np.testing.assert_allclose(
        sensor.rotate_about_grey(jnp.asarray(photos), 2 * math.pi / 3), photos[..., [2, 0, 1]],
        atol=2e-6,
    )


def test_jitter_is_zero_mean_uniform_noise_within_the_amplitude():
    amplitude = SENSOR_DEFAULTS["jitter"]["amplitude"]
    grey = np.full((4, HEIGHT, WIDTH, 3), 0.5, np.float32)
    noise = views("jitter", grey) - grey
    assert abs(noise.mean()) < 1e-3
    assert np.abs(noise).max() <= amplitude + 1e-6
    np.testing.assert_allclose(noise.std(), 0.05, rtol=0.02)  # uniform: σ = amplitude / √3
    assert abs(np.corrcoef(noise[..., 0].ravel(), noise[..., 1].ravel())[0, 1]) < 0.02


# PRNG rules, jit and vmap, shapes and range -----------------------------------------------------


def test_same_key_same_views_other_key_other_views(photos):
    first = views(SENSOR, photos, jax.random.key(7))
    np.testing.assert_array_equal(views(SENSOR, photos, jax.random.key(7)), first)
    assert np.abs(views(SENSOR, photos, jax.random.key(8)) - first).max() > 0.2


def test_examples_in_one_batch_get_independent_views(photos):
    same = np.repeat(photos[:1], 4, axis=0)
    out = views(SENSOR, same)
    for a in range(4):
        for b in range(a):
            assert np.abs(out[a] - out[b]).max() > 0.2


def test_p_applies_an_op_to_that_share_of_the_examples(photos):
    fn = augment("translate_x", translate_x_max_fraction=0.1, translate_x_p=0.5)
    unchanged = [
        np.array_equal(view, original)
        for seed in range(10)
        for view, original in zip(np.asarray(fn(jax.random.key(seed), photos)), photos)
    ]
    assert 0.25 < np.mean(unchanged) < 0.75


def test_raw_uint32_keys_work_too(photos):
    raw = jax.random.PRNGKey(3)
    out = np.asarray(augment("translate_x", translate_x_max_fraction=0.1)(raw, photos))
    assert all(signed_roll(original, view) is not None for original, view in zip(photos, out))


def test_indices_default_to_positions_in_the_batch(photos):
    default = augment("translate_x", translate_x_max_fraction=0.1)(KEY, photos)
    explicit = views("translate_x", photos, translate_x_max_fraction=0.1)
    np.testing.assert_array_equal(default, explicit)


def test_a_shard_with_its_global_indices_gets_the_views_of_the_whole_batch(photos):
    """Same draws, so equal up to float rounding (XLA may fuse a batch of 2 differently)."""
    whole = views(SENSOR, photos)
    fn = augment(SENSOR)
    for start in (0, 2):
        part = fn(KEY, photos[start : start + 2], jnp.arange(start, start + 2))
        np.testing.assert_allclose(part, whole[start : start + 2], atol=1e-6)


@pytest.fixture(scope="module")
def sharded_photos(photos):
    """The photos split over `'data'` on the Explicit mesh `jax.make_mesh` builds by default."""
    if jax.device_count() < 4:
        pytest.skip("needs 4 devices (conftest fakes 8 on CPU)")
    mesh = jax.make_mesh((4,), ("data",), devices=jax.devices()[:4])
    return jax.device_put(photos, NamedSharding(mesh, PartitionSpec("data")))


def test_a_batch_sharded_over_a_data_mesh_gets_the_single_device_views(photos, sharded_photos):
    out = augment(SENSOR)(KEY, sharded_photos, jnp.arange(4))
    assert out.sharding.spec[0] == "data"
    np.testing.assert_allclose(out, views(SENSOR, photos), atol=1e-6)


@pytest.mark.parametrize("spec", ["mocov2", "all"])
def test_every_op_traces_on_a_sharded_batch(sharded_photos, spec):
    """On an Explicit mesh vmap rejects some mixes of batched values and constants (a select or
    stack of both) that work unsharded; tracing is where that fails, and it is cheap."""
    lowered = augment(spec).lower(KEY, sharded_photos, jnp.arange(4))
    assert lowered.out_info.sharding.spec[0] == "data"


def test_vmap_over_sub_batches_agrees_with_the_batched_call(photos):
    fn = make_augment(SENSOR)
    nested = jax.jit(jax.vmap(fn, in_axes=(None, 0, 0)))(
        KEY, photos.reshape(2, 2, HEIGHT, WIDTH, 3), jnp.arange(4).reshape(2, 2)
    )
    np.testing.assert_allclose(np.asarray(nested).reshape(photos.shape), views(SENSOR, photos),
                               atol=1e-6)


SPECS = [
    ("translate_x", {"translate_x_max_fraction": 0.1}),
    ("permute_x", {}),
    ("hue", {}),
    ("jitter", {}),
    ("crop", {}),
    (SENSOR, {}),
    ("mocov2", {}),
    ("all", {}),
]


@pytest.mark.parametrize("spec, params", SPECS, ids=[spec for spec, _ in SPECS])
def test_every_op_keeps_shape_dtype_and_range(photos, spec, params):
    out = views(spec, photos, **params)
    assert out.shape == photos.shape and out.dtype == jnp.float32
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0


@pytest.mark.parametrize("spec", ["mocov2", "all"])
def test_composite_views_depend_only_on_key_index_and_image(photos, spec):
    """Reordering the batch along with its indices reorders the views, nothing else."""
    whole = views(spec, photos)
    order = np.array([2, 0, 3, 1])
    moved = augment(spec)(KEY, photos[order], jnp.asarray(order))  # same shapes: no recompile
    np.testing.assert_allclose(moved, whole[order], atol=1e-6)
    assert np.abs(whole - photos).max() > 0.2


# Sub-ops of the MoCo v2 and "all" baselines ------------------------------------------------------


def test_mocov2_with_a_full_crop_grayscale_and_flip_only(photos):
    """A whole-image crop resizes to itself exactly; grayscale then flip are as torchvision's."""
    out = views(
        "mocov2", photos, mocov2_crop_scale_min=1.0, mocov2_crop_ratio_min=WIDTH / HEIGHT,
        mocov2_crop_ratio_max=WIDTH / HEIGHT, mocov2_color_jitter_p=0.0, mocov2_grayscale_p=1.0,
        mocov2_blur_p=0.0, mocov2_flip_p=1.0,
    )
    luma = photos @ np.array([0.299, 0.587, 0.114], np.float32)
    np.testing.assert_allclose(out, np.repeat(luma[:, :, ::-1, None], 3, axis=-1), atol=1e-6)


def test_a_whole_image_crop_is_the_identity_and_the_default_one_is_not(photos):
    ratio = WIDTH / HEIGHT
    whole = views("crop", photos, crop_scale_min=1.0, crop_ratio_min=ratio, crop_ratio_max=ratio)
    np.testing.assert_allclose(whole, photos, atol=1e-6)
    assert np.abs(views("crop", photos) - photos).mean() > 0.02


def test_all_with_p_zero_is_the_identity(photos):
    np.testing.assert_array_equal(views("all", photos, all_p=0.0), photos)


@pytest.mark.parametrize("box", [(0, 0, HEIGHT, WIDTH), (10, 30, 40, 57), (50, 3, 46, 125)])
def test_resized_crop_equals_jax_image_resize_of_the_box(photos, box):
    top, left, h, w = box
    ours = jax.jit(backend.resize_box)(jnp.asarray(photos[1]), *box)
    reference = jax.image.resize(photos[1][top : top + h, left : left + w], (HEIGHT, WIDTH, 3),
                                 "linear")
    np.testing.assert_allclose(ours, reference, atol=1e-5)


# Each backend's form of a pixel movement: the TPU forms, called here on CPU ------------------------


def test_tpu_column_take_is_the_numpy_take(photos):
    columns = np.random.default_rng(0).integers(0, WIDTH, WIDTH)  # repeats too, not only shuffles
    tpu = jax.jit(backend.take_columns_tpu)(jnp.asarray(photos[0]), jnp.asarray(columns))
    np.testing.assert_allclose(tpu, photos[0][:, columns], atol=1e-6)
    np.testing.assert_array_equal(backend.take_columns_gather(photos[0], columns),
                                  photos[0][:, columns])
    values = np.random.default_rng(1).integers(-50, 50, WIDTH).astype(np.int32)
    np.testing.assert_array_equal(jax.jit(backend.lookup_tpu)(values, columns), values[columns])


def test_tpu_resized_crop_equals_the_gather_on_random_boxes(photos):
    keys = jax.random.split(KEY, 8)
    boxes = jax.vmap(lambda k: photo._random_crop_box(k, HEIGHT, WIDTH, (0.2, 1.0), (0.75, 4 / 3)))(
        keys)
    images = jnp.asarray(np.resize(photos, (8, HEIGHT, WIDTH, 3)))
    tpu = jax.jit(jax.vmap(backend.resize_box_tpu))(images, *boxes)
    gather = jax.jit(jax.vmap(backend.resize_box_gather))(images, *boxes)
    np.testing.assert_allclose(tpu, gather, atol=1e-6)


@pytest.mark.parametrize("amount", [-0.3, 0.17, 0.3])
def test_tpu_shear_equals_the_gather_in_both_directions(photos, amount):
    image = jnp.asarray(photos[1])
    y, x = np.meshgrid(np.arange(HEIGHT) - (HEIGHT - 1) / 2, np.arange(WIDTH) - (WIDTH - 1) / 2,
                       indexing="ij")
    rows, columns = y + (HEIGHT - 1) / 2, x + (WIDTH - 1) / 2
    for along_x, ys, xs in ((True, rows, columns + amount * y), (False, rows + amount * x, columns)):
        positions = jnp.asarray(ys, jnp.float32), jnp.asarray(xs, jnp.float32)
        tpu = jax.jit(backend.shear_tpu)(image, *positions, along_x)
        gather = jax.jit(backend.shear_gather)(image, *positions, along_x)
        np.testing.assert_allclose(tpu, gather, atol=1e-6)
        assert np.abs(np.asarray(tpu) - photos[1]).max() > 0.2


def test_tpu_colour_jitter_equals_the_slots_form_in_every_order(photos):
    """All 24 orders of the four adjustments, factors wide enough to clip."""
    orders = np.array(list(itertools.permutations(range(4))), np.int32)
    u = np.random.default_rng(0).uniform(size=(len(orders), 4)).astype(np.float32)
    factors, shifts = 0.2 + 1.6 * u[:, :3], 0.2 * u[:, 3] - 0.1
    images = jnp.asarray(np.resize(photos, (len(orders), HEIGHT, WIDTH, 3)))
    tpu = jax.jit(jax.vmap(colour.jitter_two_passes))(images, factors, orders, shifts)
    default = jax.jit(jax.vmap(colour.jitter_in_slots))(images, factors, orders, shifts)
    np.testing.assert_allclose(tpu, default, atol=1e-6)
    assert np.abs(np.asarray(default) - np.asarray(images)).max() > 0.2


@pytest.mark.parametrize("op", [photo._blur_op(0.1, 0.1, 2.0), photo._blur_op(0.6, 4.0, 9.0),
                                photo.FLIP], ids=["blur", "wide_blur", "flip"])
def test_tpu_separable_matrices_equal_the_direct_op(photos, op):
    """The wide blur (radius 28) reflects many taps past each edge."""
    both = jax.jit(lambda k, x: (chain.separable_composed(x, [(op, k, True)]), op.apply(k, x)))
    for key in jax.random.split(KEY, 3):
        tpu, direct = both(key, jnp.asarray(photos[2]))
        np.testing.assert_allclose(tpu, direct, atol=1e-6)


def test_tpu_separable_run_composes_as_the_ops_one_by_one(photos):
    """A blur then a flip, each applied or skipped."""
    ops = [photo._blur_op(0.1, 0.1, 2.0), photo.FLIP]

    @jax.jit
    def both(image, keys, coins):
        run = list(zip(ops, keys, coins))
        return chain.separable_composed(image, run), chain.separable_one_by_one(image, run)

    for coins in itertools.product([False, True], repeat=2):
        composed, one_by_one = both(jnp.asarray(photos[1]), jax.random.split(KEY, 2),
                                    jnp.asarray(coins))
        np.testing.assert_allclose(composed, one_by_one, atol=1e-6)


def test_the_tpu_forms_together_give_the_default_mocov2_views(photos, monkeypatch):
    """Every `platform_dependent` made to take its TPU branch, here on CPU."""
    default = views("mocov2", photos)  # the compiled function the other mocov2 tests share
    taken = []

    def tpu_branch(*args, tpu, default):
        taken.append(tpu.func.__name__ if isinstance(tpu, functools.partial) else tpu.__name__)
        return tpu(*args)

    monkeypatch.setattr(jax.lax, "platform_dependent", tpu_branch)
    tpu = jax.jit(make_augment("mocov2"))(KEY, photos, jnp.arange(len(photos)))
    np.testing.assert_allclose(tpu, default, atol=1e-6)
    assert {"resize_box_tpu", "jitter_two_passes", "separable_composed", "lookup_tpu"} <= set(taken)


def test_short_argsort_is_numpys_stable_argsort_ties_included():
    values = np.array([0.5, 0.1, 0.5, 0.0, 0.1, 0.9], np.float32)
    np.testing.assert_array_equal(chain.short_argsort(jnp.asarray(values)),
                                  np.argsort(values, kind="stable"))


def reference_columns(index, max_fraction=0.5, segments=4, min_share=0.25):
    """translate_x then permute_x at p = 1 in numpy, from the chain's keys for example `index`:
    key 0 the coins, key 1 the shift, key 2 the cuts and the segments' order."""
    keys = jax.random.split(jax.random.fold_in(KEY, index), 3)
    reach = int(max_fraction * WIDTH)
    u = np.float32(jax.random.uniform(keys[1]))
    shift = min(int(np.floor(u * np.float32(2 * reach + 1))), 2 * reach) - reach
    shifted = (np.arange(WIDTH) - shift) % WIDTH
    v = np.asarray(jax.random.uniform(keys[2], (2 * segments - 1,)))
    shortest = max(1, int(min_share * WIDTH / segments))
    room = WIDTH - segments * shortest + 1
    slack = np.minimum(np.floor(v[: segments - 1] * np.float32(room)), room - 1).astype(int)
    bounds = np.concatenate([[0], np.sort(slack) + shortest * np.arange(1, segments), [WIDTH]])
    pieces = [np.arange(bounds[i], bounds[i + 1]) for i in range(segments)]
    order = np.argsort(v[segments - 1 :], kind="stable")
    return shifted[np.concatenate([pieces[i] for i in order])]


def test_shift_then_permutation_moves_columns_as_numpy_does_from_the_same_draws(photos):
    """The two column ops compose into one index; the views are exactly numpy's."""
    out = views("translate_x|permute_x", photos)
    for index, (original, view) in enumerate(zip(photos, out)):
        np.testing.assert_array_equal(view, original[:, reference_columns(index)])


def test_random_crop_boxes_fit_and_follow_the_scale_and_ratio_ranges():
    keys = jax.random.split(KEY, 500)
    boxes = jax.jit(jax.vmap(
        lambda k: photo._random_crop_box(k, HEIGHT, WIDTH, (0.2, 1.0), (3 / 4, 4 / 3))))(keys)
    top, left, h, w = (np.asarray(v) for v in boxes)
    assert (top >= 0).all() and (left >= 0).all()
    assert (top + h <= HEIGHT).all() and (left + w <= WIDTH).all()
    area = h * w / (HEIGHT * WIDTH)
    assert area.min() > 0.19 and area.max() <= 1.0 and area.std() > 0.15
    assert (w / h).min() > 0.74 and (w / h).max() < 1.35


def test_hsv_conversions_match_matplotlib(photos):
    hsv = np.asarray(colour.rgb_to_hsv(jnp.asarray(photos)))
    np.testing.assert_allclose(hsv, matplotlib.colors.rgb_to_hsv(photos), atol=1e-5)
    rgb = colour.hsv_to_rgb(jnp.asarray(hsv))
    np.testing.assert_allclose(rgb, matplotlib.colors.hsv_to_rgb(hsv), atol=1e-5)
    np.testing.assert_allclose(colour.shift_hue(jnp.asarray(photos), 0.0), photos, atol=1e-5)


def test_grayscale_has_equal_channels_and_is_pils_luma(photos):
    grey = np.asarray(colour.grayscale(jnp.asarray(photos[0])))
    np.testing.assert_array_equal(grey[..., 0], grey[..., 2])
    reference = from_pil(pil(photos[0]).convert("L"))
    np.testing.assert_allclose(grey[..., 1], reference, atol=0.6 / 255)


@pytest.mark.parametrize(
    "ours, theirs",
    [
        (colour.brightness, ImageEnhance.Brightness),
        (colour.contrast, ImageEnhance.Contrast),
        (colour.saturation, ImageEnhance.Color),
        (photo._sharpness, ImageEnhance.Sharpness),
    ],
)
@pytest.mark.parametrize("factor", [0.3, 1.6])
def test_enhance_ops_match_pil(photos, ours, theirs, factor):
    reference = from_pil(theirs(pil(photos[2])).enhance(factor))
    np.testing.assert_allclose(ours(jnp.asarray(photos[2]), factor), reference, atol=2.5 / 255)


def test_gaussian_blur_matches_scipy_with_reflected_edges(photos):
    ours = photo._gaussian_blur(jnp.asarray(photos[1]), 1.7, 4)
    reference = scipy.ndimage.gaussian_filter(photos[1], (1.7, 1.7, 0), mode="mirror",
                                              truncate=4 / 1.7)
    np.testing.assert_allclose(ours, reference, atol=1e-5)


def levels(image):
    return np.round(np.asarray(image) * 255).astype(np.uint8)


def test_point_ops_match_pil(photos):
    image = jnp.asarray(photos[3])
    for threshold in (40, 128, 230):
        np.testing.assert_array_equal(
            levels(photo._solarize(image, threshold / 255)), ImageOps.solarize(pil(image), threshold)
        )
    for bits in (1, 4, 7):
        np.testing.assert_array_equal(
            levels(photo._posterize(image, bits)), ImageOps.posterize(pil(image), bits)
        )
    equalize = jax.jit(photo._equalize)
    for picture in (image, image[20:40] * 0.3 + 0.2):
        np.testing.assert_array_equal(levels(equalize(picture)), ImageOps.equalize(pil(picture)))
    dull = jnp.asarray(from_pil(pil(image * 0.5 + 0.25)))  # 8-bit, as PIL sees it
    stretched = np.asarray(photo._autocontrast(dull))
    np.testing.assert_allclose(stretched.min((0, 1)), 0, atol=1e-6)
    np.testing.assert_allclose(stretched.max((0, 1)), 1, atol=1e-6)
    gap = stretched - from_pil(ImageOps.autocontrast(pil(dull)))
    assert gap.min() >= -1e-6 and gap.max() < 1 / 255 + 1e-6  # PIL truncates to 8 bits


def test_equalize_and_autocontrast_leave_a_flat_image_alone():
    flat = jnp.full((8, 8, 3), 0.4)
    np.testing.assert_allclose(jax.jit(photo._equalize)(flat), np.round(0.4 * 255) / 255)
    np.testing.assert_array_equal(photo._autocontrast(flat), flat)


def test_warp_rotates_and_shears_about_the_centre(photos):
    warp = jax.jit(backend.warp)
    square = jnp.asarray(photos[0][:, :HEIGHT])
    np.testing.assert_array_equal(warp(square, jnp.eye(2)), square)
    turn = jnp.array([[0.0, 1.0], [-1.0, 0.0]])
    np.testing.assert_allclose(warp(square, turn), np.rot90(photos[0][:, :HEIGHT]), atol=1e-6)
    odd = photos[0][:65, :65]
    sheared = np.asarray(warp(jnp.asarray(odd), jnp.array([[1.0, 0.0], [1.0, 1.0]])))
    for y in (0, 20, 32, 50):
        shift = y - 32  # row y reads columns x + (y - centre)
        for x in (0, 30, 64):
            expected = odd[y, x + shift] if 0 <= x + shift < 65 else np.full(3, 0.5)
            np.testing.assert_allclose(sheared[y, x], expected, atol=1e-6)


# Bad input ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "spec, params, message",
    [
        ("", {}, r"spec is empty; .*translate_x, permute_x, hue, jitter, crop, mocov2, all"),
        ("hue|", {}, r"unknown augmentation an empty op in spec 'hue\|'; valid ops: translate_x"),
        ("translate_x|rotate", {}, r"unknown augmentation 'rotate' .*valid ops: .*mocov2, all"),
        ("hue", {"hue_max_degree": 30}, r"unknown .*'hue_max_degree'; valid .*: hue_max_degrees"),
        ("hue", {"jitter_amplitude": 0.1}, r"'jitter_amplitude' is for op 'jitter', which is not"),
        ("hue", {"hue_max_degrees": 270}, r"hue_max_degrees must be a number in \[0, 180\]; got"),
        ("hue", {"hue_max_degrees": float("nan")}, r"hue_max_degrees must be .* got nan"),
        ("permute_x", {"permute_x_segments": 2.5}, r"permute_x_segments must be an integer"),
        ("permute_x", {"permute_x_segments": True}, r"permute_x_segments must be an integer"),
        ("jitter", {"jitter_p": 1.5}, r"jitter_p must be a number in \[0, 1\]; got 1.5"),
        ("mocov2", {"mocov2_crop_scale_min": 0.9, "mocov2_crop_scale_max": 0.5},
         r"mocov2_crop_scale_min must not exceed mocov2_crop_scale_max; got 0.9 > 0.5"),
        ("crop", {"crop_scale_min": 0.8, "crop_scale_max": 0.6},
         r"crop_scale_min must not exceed crop_scale_max; got 0.8 > 0.6"),
        ("mocov2", {"mocov2_blur_sigma_min": 0}, r"mocov2_blur_sigma_min must be a number > 0"),
        ("permute_x", {"permute_x_segments": 0}, r"permute_x_segments must be an integer ≥ 1"),
        ("all", {"all_posterize_min_bits": 0}, r"all_posterize_min_bits must be an integer in"),
        ("all", {"all_permute_x_segmentz": 3}, r"unknown .*; valid .*all_permute_x_segments"),
    ],
)
def test_bad_specs_and_params_are_value_errors_that_say_why(spec, params, message):
    with pytest.raises(ValueError, match=message):
        make_augment(spec, **params)


@pytest.mark.parametrize(
    "images, indices, message",
    [
        (np.zeros((2, 8, 8)), None, r"\[batch, height, width, 3\]; got shape \(2, 8, 8\)"),
        (np.zeros((2, 8, 8, 3), np.uint8), None, r"floats in \[0, 1\]; got uint8"),
        (np.zeros((2, 8, 8, 3), np.float32), np.arange(3), r"one per image\); got int32 \(3,\)"),
    ],
)
def test_bad_images_and_indices_are_value_errors(images, indices, message):
    with pytest.raises(ValueError, match=message):
        make_augment("jitter")(KEY, images, indices)


def test_more_segments_than_columns_is_a_value_error():
    with pytest.raises(ValueError, match="9 segments do not fit in 8 columns"):
        make_augment("permute_x", permute_x_segments=9)(KEY, np.zeros((1, 4, 8, 3), np.float32))


# The grid picture --------------------------------------------------------------------------------


def test_grid_shows_each_original_then_its_views(photos):
    grid = augment_grid(photos[:2], "translate_x", views=3, translate_x_max_fraction=0.1)
    assert grid.shape == (2 * HEIGHT + 2, 4 * WIDTH + ORIGINAL_GAP + 4, 3)
    np.testing.assert_array_equal(grid[:HEIGHT, :WIDTH], photos[0])
    np.testing.assert_array_equal(grid[HEIGHT + 2 :, :WIDTH], photos[1])
    np.testing.assert_array_equal(grid[:, WIDTH : WIDTH + ORIGINAL_GAP], 1.0)
    first_view = grid[:HEIGHT, WIDTH + ORIGINAL_GAP : 2 * WIDTH + ORIGINAL_GAP]
    assert signed_roll(photos[0], first_view) is not None


def test_mocov2_colour_jitter_applies_each_op_once_in_torchvisions_random_order(photos):
    """Reference: the four adjustments composed in the drawn order, one example at a time."""
    only_jitter = dict(mocov2_crop_scale_min=1.0, mocov2_crop_ratio_min=WIDTH / HEIGHT,
                       mocov2_crop_ratio_max=WIDTH / HEIGHT, mocov2_color_jitter_p=1.0,
                       mocov2_grayscale_p=0.0, mocov2_blur_p=0.0, mocov2_flip_p=0.0)
    got = views("mocov2", photos, **only_jitter)
    for index, image in enumerate(photos):
        example_key = jax.random.fold_in(KEY, index)
        # _chain's keys (coins, then one per step): the spec's one op, then mocov2's crop, jitter…
        mocov2_key = jax.random.split(example_key, 2)[1]
        u = np.asarray(jax.random.uniform(jax.random.split(mocov2_key, 6)[2], (8,)))
        ops = [lambda x: colour.brightness(x, chain.between(u[0], 0.6, 1.4)),
               lambda x: colour.contrast(x, chain.between(u[1], 0.6, 1.4)),
               lambda x: colour.saturation(x, chain.between(u[2], 0.6, 1.4)),
               lambda x: colour.shift_hue(x, chain.between(u[3], -0.1, 0.1))]
        expected = image
        for op in np.argsort(u[4:]):
            expected = ops[op](expected)
        np.testing.assert_allclose(got[index], expected, atol=2e-5)
