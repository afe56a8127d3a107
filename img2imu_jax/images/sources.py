"""Where images come from: any TFDS dataset by name, the bundled photos, or a folder of images.

The bundled set is the embedded default for a fresh machine with no network: real photographs
that ship inside installed wheels (scikit-image's bundled data, scikit-learn's sample images,
matplotlib's sample photo), assembled into a small TFDS dataset on first use. A plain folder
of images goes through the same builder, so users can point pre-training at their own photos.
"""

from __future__ import annotations

import difflib
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import tensorflow_datasets as tfds
from etils import epath
from PIL import Image

from img2imu_jax.images.tfds_writer import ShardedDatasetWriter
from img2imu_jax.paths import user_path

BUNDLED_PHOTOS = "bundled_photos"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")
EXAMPLES_PER_SHARD = 1024
# scikit-image ships these photographs inside its wheel (the rest of its data is downloaded on
# demand, or is synthetic: chessboards, phantoms, logos).
_SKIMAGE_PHOTOS = (
    "astronaut.png", "brick.png", "camera.png", "cell.png", "chelsea.png", "clock_motion.png",
    "coffee.png", "coins.png", "grass.png", "gravel.png", "hubble_deep_field.jpg", "ihc.png",
    "microaneurysms.png", "moon.png", "motorcycle_left.png", "page.png", "retina.jpg",
    "rocket.jpg", "text.png",
)

log = logging.getLogger(__name__)


def bundled_photo_paths() -> list[Path]:
    """The real photographs inside installed scikit-image, scikit-learn and matplotlib wheels."""
    import matplotlib
    import skimage.data
    import sklearn.datasets

    skimage_dir = Path(skimage.data.__file__).parent
    sklearn_dir = Path(sklearn.datasets.__file__).parent / "images"
    matplotlib_dir = Path(matplotlib.get_data_path()) / "sample_data"
    candidates = [skimage_dir / name for name in _SKIMAGE_PHOTOS] + [
        sklearn_dir / "china.jpg", sklearn_dir / "flower.jpg", matplotlib_dir / "grace_hopper.jpg",
    ]
    return [path for path in candidates if path.is_file()]


def check_source(dataset: str, data_dir: str | os.PathLike | None = None) -> None:
    """A one-line ValueError, before any data is read, unless `dataset` names something
    load_builder can open: the bundled photos, an existing folder, a registered TFDS builder
    or a dataset already written into `data_dir` (e.g. by `img2imu prepare`).

    A name that is neither, yet has a path separator or starts with '.' or '~', is reported as
    a missing folder; anything else as an unknown TFDS name with the closest known ones.
    """
    if dataset == BUNDLED_PHOTOS or user_path(dataset, what="dataset").is_dir():
        return
    name = dataset.partition(":")[0].partition("/")[0]
    data_dir = user_path(data_dir or tfds.core.constants.DATA_DIR, what="data dir")
    known = tfds.list_builders(with_community_datasets=False)
    if name and (name in known or (data_dir / name).is_dir()):
        return
    if os.sep in dataset or dataset.startswith((".", "~")):
        raise ValueError(f"image folder {dataset} does not exist")
    close = difflib.get_close_matches(name, known + [BUNDLED_PHOTOS], n=3, cutoff=0.6)
    hint = f"did you mean {', '.join(close)}?" if close else (
        f"give a TFDS name, {BUNDLED_PHOTOS!r} or a folder of images")
    raise ValueError(f"{dataset!r} is neither a TFDS dataset, {BUNDLED_PHOTOS!r}, a dataset in "
                     f"{data_dir}, nor a folder; {hint}")


def load_builder(
    dataset: str, data_dir: str | os.PathLike | None = None, *, build_if_missing: bool = False
) -> tfds.core.DatasetBuilder:
    """A TFDS builder for `dataset`: a TFDS name, `bundled_photos`, or a folder of images.

    The bundled photos and folders are written as TFDS datasets into `data_dir` (TFDS's default
    data directory when None) the first time they are asked for. A TFDS dataset that is not
    prepared yet is built from `data_dir/downloads/manual` when `build_if_missing` (that is how
    imagenet2012 is made from its archives); otherwise it is an error that says how.
    """
    check_source(dataset, data_dir)
    data_dir = user_path(data_dir if data_dir is not None else tfds.core.constants.DATA_DIR,
                         what="data dir")
    if dataset == BUNDLED_PHOTOS:
        return build_image_folder_dataset(bundled_photo_paths(), data_dir, BUNDLED_PHOTOS)
    folder = user_path(dataset, what="dataset")
    if folder.is_dir():
        name = "folder_" + "".join(c if c.isalnum() else "_" for c in folder.name).lower()
        return build_image_folder_dataset(folder, data_dir, name)
    try:
        builder = tfds.builder(dataset, data_dir=os.fspath(data_dir))
    except tfds.core.registered.DatasetNotFoundError as error:
        first_line = str(error).strip().splitlines()[0]
        raise ValueError(f"TFDS cannot open {dataset!r}: {first_line}") from None
    if not builder.is_prepared() and build_if_missing:
        manual_dir = data_dir / "downloads" / "manual"
        log.info("preparing %s from %s (one time)", dataset, manual_dir)
        builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
            manual_dir=os.fspath(manual_dir), try_download_gcs=False,
        ))
    if not builder.is_prepared():
        raise ValueError(
            f"TFDS dataset {dataset!r} is not prepared in {data_dir}. For imagenet2012, place "
            f"ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar in {data_dir}/downloads/manual "
            f"and run `img2imu prepare --dataset {dataset} --data-dir {data_dir} --out-dir OUT` "
            "(or `tfds build`; see README)"
        )
    return builder


def build_image_folder_dataset(
    images: str | os.PathLike | Sequence[Path], data_dir: str | os.PathLike, name: str
) -> tfds.core.DatasetBuilder:
    """Writes image files as TFDS dataset `name` (split `train`) unless already there.

    From a folder, each first-level subfolder is a class; images directly in it are class
    `images`. Files that cannot be decoded are skipped, logged and recorded with the shard.
    """
    files, labels = _list_images(images)
    if not files:
        raise ValueError(f"no images ({', '.join(IMAGE_SUFFIXES)}) found in {images}")
    class_names = sorted(set(labels))
    features = tfds.features.FeaturesDict({
        "image": tfds.features.Image(shape=(None, None, 3), encoding_format="jpeg"),
        "label": tfds.features.ClassLabel(names=class_names),
        "file_name": tfds.features.Text(),
    })
    writer = ShardedDatasetWriter(data_dir, name, features)
    if not writer.finalized():
        count = -(-len(files) // EXAMPLES_PER_SHARD)
        for index in range(count):
            if writer.shard_done("train", index, count):
                continue
            chunk = slice(index * EXAMPLES_PER_SHARD, (index + 1) * EXAMPLES_PER_SHARD)
            examples, skipped = [], []
            for path, label in zip(files[chunk], labels[chunk]):
                pixels = _read_rgb(path)
                if pixels is None:
                    skipped.append(str(path))
                    continue
                examples.append({"image": pixels, "label": class_names.index(label),
                                 "file_name": path.name})
            writer.write_shard("train", index, count, examples, skipped=skipped)
        skipped_total = writer.finalize({"train": count}, f"Images from {images}")["train"]
        log.info("wrote %s (%d images, %d undecodable skipped)", writer.builder_dir,
                 len(files) - skipped_total, skipped_total)
    return tfds.builder_from_directory(writer.builder_dir)


def _list_images(images: str | os.PathLike | Sequence[Path]
                 ) -> tuple[list[epath.Path], list[str]]:
    if not isinstance(images, (str, os.PathLike)):
        files = sorted(epath.Path(p) for p in images)
        return files, ["images"] * len(files)
    root = user_path(images, what="image folder")
    if not root.is_dir():
        raise ValueError(f"{root} is not a folder of images")
    # walk(), not rglob(): epath refuses `**` (one listing per folder is what GCS allows).
    files = sorted(epath.Path(folder) / name for folder, _, names in root.walk() for name in names
                   if epath.Path(name).suffix.lower() in IMAGE_SUFFIXES)
    labels = [p.relative_to(root).parts[0] if len(p.relative_to(root).parts) > 1 else "images"
              for p in files]
    return files, labels


def _read_rgb(path: epath.Path) -> np.ndarray | None:
    try:
        with path.open("rb") as handle, Image.open(handle) as image:
            return np.asarray(image.convert("RGB"))
    except (OSError, ValueError) as error:
        log.warning("skipping undecodable image %s: %s", path, error)
        return None
