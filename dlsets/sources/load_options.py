"""The layout of loaded arrays: option checks, conversion to the asked dtype and channel
order, and the ``info`` facts of a prepared copy (shared by every source that loads)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..data.dataset import SPLITS, Dataset
from ..errors import OptionError
from . import registry
from .registry import DatasetSpec

DTYPES = ("uint8", "float32")
CHANNELS = (None, "last", "first")
FORMATS = ("numpy", "hdf5")
LABEL_MODES = ("fine", "coarse")
NOTMNIST_VARIANTS = ("small", "large")
# Arrays a format's prepared copy holds beyond each split's images and labels.
FORMAT_ARRAYS = {"cifar100": ("train_coarse_labels", "test_coarse_labels"),
                 "stl10": ("train_folds",)}


def check_option(option: str, value: Any, valid: tuple) -> None:
    """An OptionError naming the valid values unless ``value`` is one of them."""
    if value not in valid:
        raise OptionError(f"{option}={value!r} is not valid; use one of {list(valid)}")


def with_validation(ds: Dataset, val, seed) -> Dataset:
    """``ds`` with ``val`` of its train split moved to a validation split (closed on failure)."""
    from ..data.splits import with_validation as carve

    try:
        return carve(ds, val, seed=seed)
    except BaseException:
        ds.close()
        raise


def labels_key(split: str, prefix: str = "") -> str:
    """The prepared array of ``split``'s labels (coarse ones exist for train and test only)."""
    return f"{split}_{prefix if split in SPLITS else ''}labels"


def class_names(spec: DatasetSpec, manifest: dict, coarse: bool) -> tuple[str, ...]:
    """Names from the archive's own meta files when it has them (CIFAR), unless a user entry
    names its classes itself; else the registry's."""
    names = tuple(spec.coarse_classes if coarse else spec.classes)
    found = tuple(manifest.get("archive_coarse_classes" if coarse else "archive_classes") or ())
    named_by_user = (not spec.builtin and not coarse
                     and names != tuple(registry.get(spec.like).classes))
    if len(found) == len(names) and not named_by_user:
        return found
    return names


def dataset_info(spec: DatasetSpec, manifest: dict, label_mode: str, folder: Path,
          split_names: Sequence[str] = SPLITS) -> dict:
    coarse = label_mode == "coarse"
    names = class_names(spec, manifest, coarse)
    counts = manifest.get("coarse_counts" if coarse else "counts", {})
    if coarse:  # the extra splits have fine labels only
        counts = {**manifest.get("counts", {}), **counts}
    arrays = manifest["arrays"]
    prefix = "coarse_" if coarse else ""
    splits = {}
    for s in split_names:
        labels = arrays.get(labels_key(s, prefix))
        splits[s] = {
            "images_shape": list(arrays[f"{s}_images"]["shape"]),
            # None: an unlabelled split (STL-10's unlabeled)
            "labels_shape": list(labels["shape"]) if labels else None,
            "class_counts": dict(zip(names, counts.get(s, []), strict=False)),
        }
    skipped = list(manifest.get("skipped", []))
    info = {
        "name": spec.name,
        "format": spec.format,
        "label_mode": label_mode,
        "sources": dict(manifest["sources"]),
        "splits": splits,
        "skipped": skipped,
        "skipped_count": len(skipped),
        "prepared_dir": str(folder),
    }
    for key in ("decoder", "split_rule", "variant"):
        if key in manifest:
            info[key] = manifest[key]
    return info


def convert(x: np.ndarray, dtype: str, channels: str | None) -> np.ndarray:
    """Stored uint8 NHW / NHWC -> the requested layout and dtype (a view when possible)."""
    x = np.asarray(x)  # a plain ndarray over the (copy-on-write) memory map
    if x.ndim == 3 and channels is not None:
        x = x[:, None] if channels == "first" else x[..., None]
    elif x.ndim == 4 and channels == "first":
        x = x.transpose(0, 3, 1, 2)
    if dtype == "float32":
        from ..store import space

        space.need_memory(4 * x.size, f"a float32 copy of {x.shape} images",
                          "load uint8 and convert batch by batch, or use format='hdf5'")
        out = x.astype(np.float32, order="C")
        out /= 255.0
        return out
    return x if x.flags.c_contiguous else np.ascontiguousarray(x)


class Converted:
    """Lazily converted rows of a stored array, so HDF5 variants are written block by block."""

    def __init__(self, x: np.ndarray, dtype: str, channels: str | None):
        self._x, self._dtype, self._channels = x, dtype, channels
        probe = convert(x[:1], dtype, channels)
        self.shape = (len(x), *probe.shape[1:])
        self.dtype = probe.dtype

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key):
        return convert(self._x[key], self._dtype, self._channels)
