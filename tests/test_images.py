"""Host input pipeline: sources, decoding, prepared copies, sharding, resumption, bad images."""

from __future__ import annotations

import os
import io
import itertools
import logging
import pathlib

import jax
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
from imagenet_fixture import bundled_photos, prepare_imagenet2012, write_tiny_imagenet
from PIL import Image

from img2imu_jax import cli
from img2imu_jax.images.decode import decode_and_resize
from img2imu_jax.images.pipeline import HostBatches, ImageBatches
from img2imu_jax.images.prepare import prepare
from img2imu_jax.images.sources import BUNDLED_PHOTOS, bundled_photo_paths, load_builder
from img2imu_jax.parallel import DATA_AXIS, data_mesh


@pytest.fixture(scope="module")
def tiles(tmp_path_factory) -> pathlib.Path:
    """A folder of 48 distinct real-photo tiles in two classes (plus one corrupt file)."""
    root = tmp_path_factory.mktemp("tiles")
    n = 0
    for photo in list(bundled_photos().values())[:4]:
        image = Image.open(io.BytesIO(photo)).convert("RGB").resize((240, 160))
        for top in range(0, 160, 40):
            for left in range(0, 240, 80):
                folder = root / ("even" if n % 2 == 0 else "odd")
                folder.mkdir(exist_ok=True)
                image.crop((left, top, left + 80, top + 40)).save(folder / f"tile{n:02d}.jpg")
                n += 1
    (root / "odd" / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    return root


@pytest.fixture(scope="module")
def tiles_builder(tiles, tmp_path_factory):
    return load_builder(str(tiles), tmp_path_factory.mktemp("tfds"))


@pytest.fixture(scope="module")
def tiny_imagenet(tmp_path_factory):
    """TFDS's own imagenet2012, prepared offline from tiny archives with 2 corrupt images."""
    root = tmp_path_factory.mktemp("imagenet")
    written = write_tiny_imagenet(root / "manual", classes=3, per_class=6, val=4, corrupt=2)
    return prepare_imagenet2012(root / "manual", root / "tfds"), written, root / "tfds"


def test_decode_matches_pillow_on_a_real_photo():
    for name, encoded in list(bundled_photos().items())[:3]:
        ours = decode_and_resize(tf.constant(encoded), (96, 128)).numpy()
        reference = np.asarray(
            Image.open(io.BytesIO(encoded)).convert("RGB").resize((128, 96), Image.BILINEAR),
            np.float32,
        )
        assert ours.shape == (96, 128, 3) and ours.dtype == np.uint8
        assert np.abs(ours - reference).mean() < 6, name
    png = io.BytesIO()
    Image.open(io.BytesIO(encoded)).save(png, format="PNG")
    assert decode_and_resize(tf.constant(png.getvalue()), (32, 48)).shape == (32, 48, 3)


def test_reduced_size_jpeg_decoding_matches_full_decoding():
    big = io.BytesIO()
    photo = Image.open(bundled_photo_paths()[0]).convert("RGB").resize((1024, 768))
    photo.save(big, format="JPEG", quality=95)
    reduced = decode_and_resize(tf.constant(big.getvalue()), (96, 128)).numpy().astype(float)
    full = tf.image.resize(tf.io.decode_jpeg(big.getvalue()), (96, 128), antialias=True).numpy()
    assert np.abs(reduced - full).mean() < 3


def test_bundled_photos_become_a_tfds_dataset_once(tmp_path):
    builder = load_builder(BUNDLED_PHOTOS, tmp_path)
    assert builder.info.splits["train"].num_examples == len(bundled_photo_paths()) >= 20
    shard = next(pathlib.Path(builder.data_path).glob("*.tfrecord-*"))
    built_at = shard.stat().st_mtime_ns
    again = load_builder(BUNDLED_PHOTOS, tmp_path)
    assert again.info.splits["train"].num_examples == builder.info.splits["train"].num_examples
    assert shard.stat().st_mtime_ns == built_at
    names = {ex["file_name"].decode() for ex in tfds.as_numpy(builder.as_dataset(split="train"))}
    assert {"astronaut.png", "china.jpg", "flower.jpg", "grace_hopper.jpg"} <= names


def test_a_folder_becomes_a_dataset_with_classes_and_the_corrupt_file_is_logged(
    tiles, tmp_path, caplog
):
    with caplog.at_level(logging.WARNING):
        builder = load_builder(str(tiles), tmp_path)
    assert builder.info.splits["train"].num_examples == 48
    assert builder.info.features["label"].names == ["even", "odd"]
    assert "broken.jpg" in caplog.text
    labels = [int(ex["label"]) for ex in tfds.as_numpy(builder.as_dataset(split="train"))]
    assert labels.count(0) == labels.count(1) == 24


def test_unknown_and_unprepared_datasets_say_what_to_do(tmp_path):
    with pytest.raises(ValueError, match="neither a TFDS dataset"):
        load_builder("no_such_dataset_xyz", tmp_path)
    with pytest.raises(ValueError, match="downloads/manual"):
        load_builder("imagenet2012", tmp_path)


def epoch_images(host: HostBatches, batches: int) -> list[np.ndarray]:
    stream = iter(host)
    return [next(stream)[0] for _ in range(batches)]


def test_same_seed_same_stream_and_a_new_order_each_epoch(tiles_builder):
    first = epoch_images(HostBatches(tiles_builder, batch_size=8, seed=3, shuffle_buffer=64), 12)
    again = epoch_images(HostBatches(tiles_builder, batch_size=8, seed=3, shuffle_buffer=64), 12)
    other = epoch_images(HostBatches(tiles_builder, batch_size=8, seed=4, shuffle_buffer=64), 12)
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    assert not all(np.array_equal(a, b) for a, b in zip(first, other))
    assert not np.array_equal(first[0], first[6])  # epoch 1 reshuffles
    epoch0 = {image.tobytes() for batch in first[:6] for image in batch}
    assert len(epoch0) == 48  # every image once per epoch


@pytest.mark.parametrize("stop_after", [2, 6, 9])  # mid-epoch, at an epoch boundary, in epoch 1
def test_resuming_from_a_saved_position_continues_exactly(tiles_builder, stop_after):
    settings = dict(batch_size=8, seed=11, shuffle_buffer=16)
    uninterrupted = epoch_images(HostBatches(tiles_builder, **settings), 12)
    stream = iter(HostBatches(tiles_builder, **settings))
    for _ in range(stop_after):
        _, saved = next(stream)
    resumed = epoch_images(HostBatches(tiles_builder, **settings, state=saved), 12 - stop_after)
    for expected, got in zip(uninterrupted[stop_after:], resumed):
        np.testing.assert_array_equal(expected, got)


def test_the_next_epoch_is_started_before_this_one_runs_out(tiles_builder, monkeypatch):
    host = HostBatches(tiles_builder, batch_size=8, seed=11, shuffle_buffer=16)
    taken, started, build = [0], [], host._epoch
    monkeypatch.setattr(host, "_epoch", lambda epoch, start: (
        started.append((epoch, taken[0])), build(epoch, start))[1])
    for taken[0], _ in enumerate(itertools.islice(host, 8), 1):
        pass
    (first, at_start), (second, when) = started[:2]
    assert (first, at_start) == (0, 0) and second == 1
    assert 0 < when < 6  # while epoch 0 (6 batches of the 48 tiles) still had batches to give


def test_each_process_reads_its_own_share(tiles_builder):
    shares = [
        HostBatches(tiles_builder, batch_size=4, seed=0, process_index=p, process_count=2)
        for p in range(2)
    ]
    seen = [{im.tobytes() for batch in epoch_images(h, 6) for im in batch} for h in shares]
    assert len(seen[0]) == len(seen[1]) == 24 and not seen[0] & seen[1]


def test_global_batches_are_sharded_over_every_device_and_prefetched(tiles_builder):
    mesh = data_mesh()
    host = HostBatches(tiles_builder, batch_size=16, seed=5)
    expected = epoch_images(HostBatches(tiles_builder, batch_size=16, seed=5), 4)
    with ImageBatches(host, mesh, prefetch=2) as batches:
        for k, want in enumerate(expected):
            batch = next(batches)
            assert batch.shape == (16, 96, 128, 3) and batch.dtype == np.uint8
            assert batch.sharding.spec == jax.sharding.PartitionSpec(DATA_AXIS)
            assert len(batch.addressable_shards) == 8
            assert batches.state() == {"epoch": k // 3, "position": (k % 3 + 1) * 16}
            np.testing.assert_array_equal(np.asarray(batch), want)


def test_a_reader_error_reaches_the_training_loop(tiles_builder):
    with pytest.raises(ValueError, match="fewer than one batch"):
        HostBatches(tiles_builder, batch_size=64, seed=0)
    with pytest.raises(ValueError, match="does not split over 8 devices"):
        ImageBatches(HostBatches(tiles_builder, batch_size=12, seed=0), data_mesh())


def test_the_real_imagenet2012_format_runs_and_corrupt_images_are_counted(tiny_imagenet, caplog):
    builder, _, _ = tiny_imagenet
    assert builder.info.splits["train"].num_examples == 20
    host = HostBatches(builder, batch_size=6, seed=0)
    with caplog.at_level(logging.WARNING):
        images = epoch_images(host, 6)  # two epochs of the 18 good images
    # A corrupt record shuffled behind an epoch's last full batch is never read, so each epoch
    # counts one or two of the two.
    assert 2 <= host.skipped <= 4 and "undecodable" in caplog.text
    assert all(batch.shape == (6, 96, 128, 3) for batch in images)
    good = []
    raw = builder.as_dataset(split="train", decoders={"image": tfds.decode.SkipDecoding()})
    for example in raw:
        try:
            good.append(decode_and_resize(example["image"]).numpy().tobytes())
        except tf.errors.InvalidArgumentError:
            continue
    assert len(good) == 18
    for epoch in (images[:3], images[3:]):  # every good image, once per epoch: nothing lost
        assert sorted(im.tobytes() for batch in epoch for im in batch) == sorted(good)


def test_prepare_writes_a_resized_tfds_copy_that_skips_and_names_corrupt_images(
    tiny_imagenet, tmp_path, caplog
):
    builder, written, data_dir = tiny_imagenet
    with caplog.at_level(logging.WARNING):
        out = prepare("imagenet2012", data_dir, tmp_path, examples_per_shard=8)
    copy = tfds.builder("imagenet2012_96x128", data_dir=tmp_path)
    assert pathlib.Path(copy.data_path) == out
    assert copy.info.splits["train"].num_examples == 18
    assert copy.info.splits["validation"].num_examples == 4
    assert copy.info.features["label"].names == builder.info.features["label"].names
    assert "skipped 2 undecodable" in caplog.text and "train[" in caplog.text
    labels = sorted(int(ex["label"]) for ex in tfds.as_numpy(copy.as_dataset(split="train")))
    good = [label for name, label in written["train"].items() if name not in written["corrupt"]]
    assert labels == sorted(good)
    image = next(iter(tfds.as_numpy(copy.as_dataset(split="validation"))))["image"]
    assert image.shape == (96, 128, 3)


def test_prepare_is_resumable_and_splits_work_over_processes(tmp_path):
    data_dir, out = tmp_path / "in", tmp_path / "out"
    load_builder(BUNDLED_PHOTOS, data_dir)
    second = prepare(BUNDLED_PHOTOS, data_dir, out, examples_per_shard=4, process_index=1,
                     process_count=2)
    shards = sorted(second.glob("*.tfrecord-*-of-*[0-9]"))
    assert len(shards) == 3 and not (second / "dataset_info.json").exists()
    shards[0].unlink()  # as if process 1 had died while writing it
    with pytest.raises(TimeoutError, match="still missing"):
        prepare(BUNDLED_PHOTOS, data_dir, out, examples_per_shard=4, process_count=2,
                wait_seconds=0.1)
    kept = {p.name: os.stat(p).st_mtime_ns for p in shards[1:]}  # prepare returns an epath
    prepare(BUNDLED_PHOTOS, data_dir, out, examples_per_shard=4, process_index=1, process_count=2)
    assert {p.name: os.stat(p).st_mtime_ns for p in shards[1:]} == kept
    prepare(BUNDLED_PHOTOS, data_dir, out, examples_per_shard=4, process_count=2, wait_seconds=5)
    copy = tfds.builder_from_directory(second)
    assert copy.info.splits["train"].num_examples == len(bundled_photo_paths())


def test_prepare_command(tmp_path, capsys):
    argv = ["prepare", "--dataset", BUNDLED_PHOTOS, "--data-dir", str(tmp_path / "in"),
            "--out-dir", str(tmp_path / "out"), "--size", "48x64"]
    assert cli.main(argv) == 0
    assert "bundled_photos_48x64" in capsys.readouterr().out
    copy = tfds.builder("bundled_photos_48x64", data_dir=tmp_path / "out")
    assert copy.info.features["image"].shape == (48, 64, 3)
    assert cli.main(["prepare", "--dataset", "nope_xyz", "--data-dir", str(tmp_path),
                     "--out-dir", str(tmp_path / "o")]) == 1


def test_a_prepared_copy_is_decoded_a_batch_at_a_time_with_the_same_images(tiles, tmp_path):
    source_dir = tmp_path / "in"
    load_builder(str(tiles), source_dir)
    copy = tfds.builder_from_directory(prepare(str(tiles), source_dir, tmp_path / "out"))
    settings = dict(batch_size=8, seed=2, shuffle_buffer=16)
    host = HostBatches(copy, **settings)
    assert host.presized
    raw = copy.as_dataset(split="train", decoders={"image": tfds.decode.SkipDecoding()})
    one_by_one = sorted(tf.io.decode_jpeg(ex["image"]).numpy().tobytes() for ex in raw)
    uninterrupted = epoch_images(host, 12)
    for epoch in (uninterrupted[:6], uninterrupted[6:]):
        assert sorted(im.tobytes() for batch in epoch for im in batch) == one_by_one
    stream = iter(HostBatches(copy, **settings))
    for _ in range(4):
        _, saved = next(stream)
    resumed = epoch_images(HostBatches(copy, **settings, state=saved), 8)
    for expected, got in zip(uninterrupted[4:], resumed):
        np.testing.assert_array_equal(expected, got)
