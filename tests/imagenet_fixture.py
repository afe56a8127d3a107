"""Tiny ImageNet-2012 manual-download archives, so TFDS's own `imagenet2012` builder runs offline.

The layout mirrors what `tensorflow_datasets/datasets/imagenet2012` reads from `manual_dir`:

* `ILSVRC2012_img_train.tar`: one uncompressed tar per class, `<wnid>.tar`, each holding
  `<wnid>_<n>.JPEG`; the label is the inner tar's name without `.tar`.
* `ILSVRC2012_img_val.tar`: flat `ILSVRC2012_val_<8 digits>.JPEG`. The builder zips the *sorted*
  member names with the lines of its `validation_labels.txt`, so the k-th name gets the k-th line:
  naming them `..._00000001` up to `N` keeps that pairing the one real ImageNet uses.
* `ILSVRC2012_img_test.tar` is optional (the builder only warns), so it is not written.
"""

from __future__ import annotations

import io
import itertools
import pathlib
import tarfile
from importlib import resources

import matplotlib
import numpy as np
import tensorflow_datasets as tfds
from PIL import Image
from skimage import data as skimage_data
from sklearn.datasets import load_sample_images

TRAIN_TAR = "ILSVRC2012_img_train.tar"
VAL_TAR = "ILSVRC2012_img_val.tar"
_LABEL_FILES = resources.files("tensorflow_datasets") / "datasets" / "imagenet2012"


def imagenet_wnids() -> list[str]:
    """The builder's 1000 wnids in label-index order (the names file of its `ClassLabel`)."""
    return (_LABEL_FILES / "labels.txt").read_text().split()


def validation_wnids(count: int) -> list[str]:
    """Labels the builder gives the first `count` validation images, in file-name order."""
    return (_LABEL_FILES / "validation_labels.txt").read_text().split()[:count]


def validation_name(index: int) -> str:
    """ImageNet's validation file name for 0-based `index` (the builder's label line `index`)."""
    return f"ILSVRC2012_val_{index + 1:08d}.JPEG"


def bundled_photos(max_side: int = 256) -> dict[str, bytes]:
    """Real photographs shipped with installed packages, as JPEGs no longer than `max_side` px."""
    arrays = {
        name: getattr(skimage_data, name)() for name in ("astronaut", "chelsea", "coffee", "rocket")
    }
    sklearn_images = load_sample_images()
    for path, array in zip(sklearn_images.filenames, sklearn_images.images):
        arrays[pathlib.Path(path).stem] = array
    grace = pathlib.Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    with Image.open(grace) as image:
        arrays["grace_hopper"] = np.asarray(image.convert("RGB"))
    photos = {}
    for name, array in arrays.items():
        image = Image.fromarray(array).convert("RGB")
        image.thumbnail((max_side, max_side))
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=90)
        photos[name] = buffer.getvalue()
    return photos


def _add_member(tar: tarfile.TarFile, name: str, payload: bytes) -> None:
    """Adds `payload` as a regular file called `name`."""
    info = tarfile.TarInfo(name)
    info.size = len(payload)
    tar.addfile(info, io.BytesIO(payload))


def _write_archives(
    manual_dir: pathlib.Path, train: dict[str, dict[str, bytes]], val: list[bytes]
) -> dict[str, pathlib.Path]:
    """Writes the train tar (of per-wnid tars) and the flat val tar; returns their paths."""
    manual_dir.mkdir(parents=True, exist_ok=True)
    paths = {"train_tar": manual_dir / TRAIN_TAR, "val_tar": manual_dir / VAL_TAR}
    with tarfile.open(paths["train_tar"], "w") as outer:
        for wnid, files in train.items():
            inner_bytes = io.BytesIO()
            with tarfile.open(fileobj=inner_bytes, mode="w") as inner:
                for name, payload in files.items():
                    _add_member(inner, name, payload)
            _add_member(outer, f"{wnid}.tar", inner_bytes.getvalue())
    with tarfile.open(paths["val_tar"], "w") as tar:
        for index, payload in enumerate(val):
            _add_member(tar, validation_name(index), payload)
    return paths


def _write_and_describe(
    manual_dir: pathlib.Path,
    train: dict[str, dict[str, bytes]],
    val: list[bytes],
    corrupt: list[str],
) -> dict:
    """Writes the archives and describes them with the label indices the builder will assign."""
    index_of = {wnid: index for index, wnid in enumerate(imagenet_wnids())}
    return {
        "manual_dir": manual_dir,
        **_write_archives(manual_dir, train, val),
        "wnids": list(train),
        "train": {name: index_of[wnid] for wnid, files in train.items() for name in files},
        "validation": {
            validation_name(i): index_of[wnid] for i, wnid in enumerate(validation_wnids(len(val)))
        },
        "corrupt": corrupt,
    }


def write_tiny_imagenet(
    manual_dir: pathlib.Path,
    *,
    classes: int = 3,
    per_class: int = 2,
    val: int = 4,
    corrupt: int = 0,
) -> dict:
    """Writes a tiny ImageNet of bundled real photos for the first `classes` wnids.

    `corrupt` extra train files (spread over the classes, named like real JPEGs) hold random
    bytes: the builder stores image bytes without decoding them, so they reach the prepared
    dataset and fail only when a pipeline decodes them. Validation labels are what the builder's
    label file says for the first `val` names. Returns the paths, `wnids`, `train` and
    `validation` ({file_name: label index}, corrupt files included) and `corrupt` (their names).
    """
    photos = itertools.cycle(bundled_photos().values())
    wnids = imagenet_wnids()[:classes]
    train = {
        wnid: {f"{wnid}_{n}.JPEG": next(photos) for n in range(1, per_class + 1)} for wnid in wnids
    }
    rng = np.random.default_rng(0)
    corrupt_names = []
    for k in range(corrupt):
        wnid = wnids[k % classes]
        name = f"{wnid}_{per_class + 1 + k}.JPEG"
        train[wnid][name] = rng.bytes(2048)
        corrupt_names.append(name)
    val_images = [next(photos) for _ in range(val)]
    return _write_and_describe(manual_dir, train, val_images, corrupt_names)


def write_imagenet_from_sample(
    manual_dir: pathlib.Path, sample_tar: pathlib.Path, *, classes: int = 10, val: int = 10
) -> dict:
    """Writes the same layout from real ImageNet JPEGs, one per class named `<wnid>_<name>.JPEG`.

    The bytes are copied unchanged. Train holds the sample image of each of the first `classes`
    wnids; validation image k is the sample image of the wnid on line k of the builder's label
    file, so its content matches its label.
    Returns the same description as `write_tiny_imagenet`.
    """
    with tarfile.open(sample_tar) as tar:
        by_wnid = {
            member.name.split("_", 1)[0]: member for member in tar.getmembers() if member.isfile()
        }

        def read(wnid: str) -> bytes:
            return tar.extractfile(by_wnid[wnid]).read()

        train = {wnid: {f"{wnid}_1.JPEG": read(wnid)} for wnid in imagenet_wnids()[:classes]}
        val_images = [read(wnid) for wnid in validation_wnids(val)]
    return _write_and_describe(manual_dir, train, val_images, [])


def prepare_imagenet2012(
    manual_dir: pathlib.Path, data_dir: pathlib.Path
) -> tfds.core.DatasetBuilder:
    """Runs TFDS's own `imagenet2012` builder on `manual_dir`, with GCS lookups explicitly off.

    Needs the `importlib_resources` package: TFDS 4.9.10 imports it in `download_and_prepare` but
    declares it only for Python < 3.9 (tensorflow/datasets#11212).
    """
    builder = tfds.builder("imagenet2012", data_dir=data_dir, try_gcs=False)
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=manual_dir, try_download_gcs=False)
    )
    return builder
