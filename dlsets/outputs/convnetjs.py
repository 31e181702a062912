"""Sprite sheets for the ConvNetJS browser demos (and the Keras.js ones that reuse their data).

``<prefix>_batch_<i>.png``: each PNG row is one image, its pixels in row-major order: a
greyscale 28x28 image is a row of 784 grey pixels, a colour 32x32 image a row of 1,024 RGB
pixels (the R, G and B planes as the pixels' channels). Batches of ``batch_size`` rows (the
MNIST demo: 3,000; the CIFAR-10 demo: 1,000) hold the training images first; the test images
start at the next batch, so with MNIST batches 0-19 are train and batch 20 the first 3,000
test images, as the demo expects. ``<prefix>_labels.js`` is ``var labels=[...];`` indexed by
``batch * batch_size + row`` (-1 where a short last training batch leaves a gap), and
``<prefix>_labels.json`` holds the same labels with the class names and the batch layout.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import OptionError
from ..store import cache, space

if TYPE_CHECKING:
    from ..data.dataset import Dataset

KIND = "convnetjs"
GREY_BATCH = 3000  # the MNIST demo
COLOUR_BATCH = 1000  # the CIFAR-10 demo


def _rows(images: np.ndarray) -> np.ndarray:
    """(n, H, W[, C]) uint8 -> the PNG (n, H*W) for greyscale, (n, H*W, 3) for RGB."""
    a = np.asarray(images)
    if a.dtype != np.uint8:
        raise OptionError(f"ConvNetJS sprite sheets hold uint8 pixels, got {a.dtype}: load the "
                          "dataset with dtype='uint8'")
    if a.ndim == 4 and a.shape[3] == 1:
        a = a[..., 0]
    if a.ndim == 3:
        return a.reshape(len(a), -1)
    if a.ndim == 4 and a.shape[3] == 3:
        return a.reshape(len(a), -1, 3)
    raise OptionError(f"images of shape {a.shape} cannot be sprite rows: expected (N, H, W) "
                      "greyscale or (N, H, W, 3) colour, channels last")


def write_convnetjs(
    out: str | os.PathLike,
    train: tuple[Any, Any],
    test: tuple[Any, Any],
    *,
    prefix: str,
    classes: Sequence[str] = (),
    batch_size: int | None = None,
) -> Path:
    """Write ``train`` and ``test`` ``(images, labels)`` as sprite sheets into the folder
    ``out`` (new, empty, or an earlier ConvNetJS export, replaced whole); returns it.

    ``batch_size`` defaults to 3,000 rows for greyscale images and 1,000 for colour.
    """
    from PIL import Image

    from ..store.atomic import replacing_dir

    if not prefix or "/" in prefix or "\\" in prefix or prefix.startswith("."):
        raise OptionError(f"prefix={prefix!r} is not valid: give a plain file name prefix")
    sample = np.asarray(train[0][:1])
    if sample.ndim not in (3, 4):
        raise OptionError(f"images of shape {np.shape(train[0])}: expected (N, H, W[, C])")
    grey = sample.ndim == 3 or sample.shape[3] == 1
    size = batch_size if batch_size is not None else GREY_BATCH if grey else COLOUR_BATCH
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
        raise OptionError(f"batch_size={batch_size!r} is not valid: give a whole number >= 1")
    # Never more rows than the images there are: a larger batch would only pad the labels
    # with -1 (10**12 asked for terabytes of them) and change nothing else.
    size = max(1, min(int(size), max(len(train[0]), len(test[0]))))
    out = Path(out)
    cache.check_outside(out, f"writing ConvNetJS sprite sheets into {out}")
    # PNG rows are at most the raw pixels (and a few bytes a row); labels a few bytes each.
    count = len(train[0]) + len(test[0])
    space.need_disk(out.absolute().parent, count * (sample[0].nbytes + 16) + 4096,
                    f"writing ConvNetJS sprite sheets into {out}")
    labels: list[int] = []
    batches: dict[str, list[int]] = {"train": [], "test": []}
    with replacing_dir(out, kind=KIND) as tmp:
        b = 0
        for split, (x, y) in (("train", train), ("test", test)):
            for s in range(0, len(x), size):
                rows = _rows(x[s:s + size])
                path = tmp / f"{prefix}_batch_{b}.png"
                Image.fromarray(rows).save(path)  # 2-D: greyscale "L"; (n, W, 3): RGB
                labels.extend(int(v) for v in np.asarray(y[s:s + size]))
                labels.extend([-1] * (size - len(rows)) if split == "train" else [])
                batches[split].append(b)
                b += 1
        (tmp / f"{prefix}_labels.js").write_text(
            "var labels=[" + ",".join(map(str, labels)) + "];\n", encoding="ascii")
        shape = list(sample.shape[1:]) if not grey else list(sample.shape[1:3])
        meta = {"labels": labels, "classes": list(map(str, classes)), "batch_size": size,
                "train_batches": batches["train"], "test_batches": batches["test"],
                "train_count": len(train[0]), "test_count": len(test[0]),
                "image_shape": shape, "channels": 1 if grey else 3,
                "row_width": int(np.prod(shape[:2]))}
        (tmp / f"{prefix}_labels.json").write_text(json.dumps(meta) + "\n", encoding="utf-8")
    return out


def to_convnetjs(ds: Dataset, out: str | os.PathLike, *, prefix: str | None = None,
                 batch_size: int | None = None) -> Path:
    """``ds``'s train and test splits as ConvNetJS sprite sheets in the folder ``out``; file
    names start with ``prefix`` (default the dataset name, ``mnist_batch_0.png``, and its
    variant if it has one, ``emnist-letters_batch_0.png``). Segmentation data is refused:
    sprite sheets carry no masks."""
    if any(ds[s].masks is not None for s in ds.split_names):
        raise OptionError(
            f"{ds.name} has segmentation masks, which ConvNetJS sprite sheets do not carry (its "
            "images would go out without them); nothing was written. Write HDF5, npz or Caffe "
            "files instead (Dataset.to_hdf5, to_npz or to_caffe), which keep the masks")
    if ds.info.get("channels") == "first":
        raise OptionError("ConvNetJS rows are channels-last: load the dataset with "
                          "channels=None or 'last'")
    variant = ds.info.get("variant")
    return write_convnetjs(out, (ds.train.images, ds.train.labels),
                           (ds.test.images, ds.test.labels),
                           prefix=prefix or (f"{ds.name}-{variant}" if variant else ds.name),
                           classes=ds.classes, batch_size=batch_size)
