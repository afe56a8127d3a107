"""TFDS's own `imagenet2012` builder prepares our tiny manual-download archives offline."""

from __future__ import annotations

import pathlib
import re
import socket

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from imagenet_fixture import prepare_imagenet2012, write_imagenet_from_sample, write_tiny_imagenet

SAMPLE_DIR = pathlib.Path("shared/datasets/imagenet_sample_1000")
TRAIN_NAME = re.compile(r"n\d{8}_\d+\.JPEG")
VAL_NAME = re.compile(r"ILSVRC2012_val_\d{8}\.JPEG")


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fails any Python-level DNS lookup or connection, so 'offline' is checked, not assumed."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)


def _examples(builder: tfds.core.DatasetBuilder, split: str, **kwargs) -> dict[str, dict]:
    """The split's examples as numpy, keyed by file name."""
    return {
        ex["file_name"].decode(): ex
        for ex in tfds.as_numpy(builder.as_dataset(split=split, shuffle_files=False, **kwargs))
    }


def _check_split(builder: tfds.core.DatasetBuilder, split: str, expected: dict[str, int]) -> None:
    """The split holds exactly `expected` ({file_name: label}), as decodable RGB uint8 images."""
    assert builder.info.splits[split].num_examples == len(expected)
    examples = _examples(builder, split)
    assert {name: int(ex["label"]) for name, ex in examples.items()} == expected
    for ex in examples.values():
        image = ex["image"]
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
        assert min(image.shape[:2]) > 16 and image.std() > 10  # a real photo, not a blank


def _check_layout(builder: tfds.core.DatasetBuilder, written: dict) -> None:
    """File names look like ImageNet's, and train labels name the wnid in the file name."""
    names = builder.info.features["label"].names
    assert len(names) == 1000 and names[: len(written["wnids"])] == written["wnids"]
    for name, label in written["train"].items():
        assert TRAIN_NAME.fullmatch(name) and names[label] == name.split("_")[0]
    assert all(VAL_NAME.fullmatch(name) for name in written["validation"])


def test_tiny_imagenet_prepares_offline(tmp_path: pathlib.Path) -> None:
    written = write_tiny_imagenet(tmp_path / "manual", classes=3, per_class=2, val=4)
    builder = prepare_imagenet2012(written["manual_dir"], tmp_path / "tfds")

    assert set(builder.info.splits) == {"train", "validation"}
    assert written["wnids"] == ["n01440764", "n01443537", "n01484850"]
    assert sorted(written["train"].values()) == [0, 0, 1, 1, 2, 2]
    # validation_labels.txt starts n01751748, n09193705, n02105855, n04263257.
    assert list(written["validation"].values()) == [65, 970, 230, 809]
    _check_layout(builder, written)
    _check_split(builder, "train", written["train"])
    _check_split(builder, "validation", written["validation"])
    assert max(max(ex["image"].shape[:2]) for ex in _examples(builder, "train").values()) == 256


def test_corrupt_train_files_survive_prepare_and_fail_on_decode(tmp_path: pathlib.Path) -> None:
    """The builder stores image bytes unchecked: corrupt JPEGs fail only when decoded."""
    written = write_tiny_imagenet(tmp_path / "manual", classes=2, per_class=1, val=1, corrupt=3)
    builder = prepare_imagenet2012(written["manual_dir"], tmp_path / "tfds")

    assert builder.info.splits["train"].num_examples == len(written["train"]) == 5
    raw = _examples(builder, "train", decoders={"image": tfds.decode.SkipDecoding()})
    assert {name: int(ex["label"]) for name, ex in raw.items()} == written["train"]
    undecodable = []
    for name, ex in raw.items():
        try:
            tf.io.decode_image(ex["image"], channels=3)
        except tf.errors.InvalidArgumentError:
            undecodable.append(name)
    assert sorted(undecodable) == sorted(written["corrupt"])
    with pytest.raises(tf.errors.InvalidArgumentError):
        _examples(builder, "train")


def test_real_imagenet_sample_prepares_offline(tmp_path: pathlib.Path) -> None:
    here = pathlib.Path(__file__).resolve()
    found = [folder / SAMPLE_DIR for folder in here.parents if (folder / SAMPLE_DIR).is_dir()]
    if not found:
        pytest.skip(f"{SAMPLE_DIR} is not in any folder above this checkout")
    written = write_imagenet_from_sample(
        tmp_path / "manual", found[0] / "imagenet_sample_1000.tar", classes=10, val=10
    )
    builder = prepare_imagenet2012(written["manual_dir"], tmp_path / "tfds")

    assert written["train"] == {f"{wnid}_1.JPEG": i for i, wnid in enumerate(written["wnids"])}
    _check_layout(builder, written)
    _check_split(builder, "train", written["train"])
    _check_split(builder, "validation", written["validation"])
