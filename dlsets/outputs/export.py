"""Write a loaded dataset as one HDF5 file (dlsets layout, see :mod:`dlsets.formats.h5`) or npz."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..formats import h5
from ..store import cache, space, stamps

if TYPE_CHECKING:
    from ..data.dataset import Dataset

_BLOCK_BYTES = 64 << 20  # copy this much at a time so float32 copies never sit whole in memory


def write_hdf5(
    path: str | os.PathLike,
    splits: Mapping[str, tuple[Any, ...]],
    classes: Sequence[str],
    sources: Mapping[str, str] | None = None,
    *,
    compression: str | None = None,
    overwrite: bool = False,
    **attrs: Any,
) -> Path:
    """Write ``{split: (images, labels)}`` (or ``(images, labels, masks)``) to ``path``
    atomically, chunked by sample.

    Images keep their dtype and per-sample shape; labels are stored as (N,) uint8 (None: an
    unlabelled split, written without labels); masks, when given and not None, as
    ``/<split>/masks``. The file carries ``classes``, ``sources``
    (file -> sha256) and any extra ``attrs``. An existing ``path`` that dlsets did not write is
    refused unless ``overwrite`` (see :mod:`dlsets.store.stamps`).
    """
    h5.check_compression(compression)
    path = Path(path)
    # Compressed output is smaller, by how much nobody knows before writing: ask for the whole.
    needed = 0
    for images, _labels, *more in splits.values():
        needed += h5.hdf5_bytes(len(images), images.shape[1:], np.dtype(images.dtype).itemsize)
        if more and more[0] is not None:
            needed += h5.hdf5_bytes(len(more[0]), more[0].shape[1:],
                                    np.dtype(more[0].dtype).itemsize)
    with h5.atomic_hdf5(path, needed, f"writing {path.name}", overwrite=overwrite) as f:
        for split, (images, labels, *more) in splits.items():
            n = len(images)
            dset, lset = h5.create_split(
                f, split, n, images.shape[1:], dtype=images.dtype, compression=compression,
                labels=labels is not None,
            )
            sample = max(1, int(np.prod(images.shape[1:])) * images.dtype.itemsize)
            step = max(1, _BLOCK_BYTES // sample)
            for start in range(0, n, step):
                stop = min(n, start + step)
                dset[start:stop] = np.asarray(images[start:stop])
                h5.check_writes(f)
            if n and lset is not None:
                lset[:] = np.asarray(labels[:], dtype=np.uint8)
            masks = more[0] if more else None
            if masks is not None:
                mset = h5.create_masks(f, split, n, masks.shape[1:], dtype=masks.dtype,
                                       compression=compression)
                for start in range(0, n, step):
                    mset[start:start + step] = np.asarray(masks[start:start + step])
        h5.write_attrs(f, classes, sources, **attrs)
    return path


def to_hdf5(ds: Dataset, path: str | os.PathLike, compression: str | None = None, *,
            overwrite: bool = False) -> Path:
    """``/train/images``, ``/train/labels``, ``/test/images``, ``/test/labels`` (and the same
    for each extra split: ``/extra/...``, ``/val/...``, ``/unlabeled/images``) plus the
    ``classes`` and ``sources`` attributes; ``compression`` is None, "gzip", "lzf" or "lz4"
    (the ``lz4`` extra). Segmentation datasets add ``/<split>/masks``."""
    cache.check_outside(path, f"writing {Path(path).name}")  # write_hdf5 writes the cache's too
    return write_hdf5(
        path,
        {s: (ds[s].images, ds[s].labels, ds[s].masks) for s in ds.split_names},
        ds.classes,
        ds.info.get("sources", {}),
        compression=compression,
        overwrite=overwrite,
        dataset=ds.name,
        **({"variant": ds.info["variant"]} if ds.info.get("variant") else {}),
    )


def to_npz(ds: Dataset, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """An npz with ``x_train``, ``y_train``, ``x_test``, ``y_test`` (keras' mnist.npz keys),
    and ``x_<split>`` (``y_<split>`` when labelled) for each extra split (``val``, ...), plus
    ``m_<split>`` masks for segmentation data; the zip's comment is the dlsets stamp. An
    existing ``path`` that dlsets did not write is refused unless ``overwrite``."""
    path = Path(path)
    cache.check_outside(path, f"writing {path.name}")
    stamps.check_replace(path, overwrite, f"writing {path.name}")
    arrays = {}
    for s in ds.split_names:
        arrays[f"x_{s}"] = ds[s].images
        if ds[s].labels is not None:
            arrays[f"y_{s}"] = ds[s].labels
        if ds[s].masks is not None:
            arrays[f"m_{s}"] = ds[s].masks
    needed = sum(int(np.prod(a.shape, dtype=object)) * np.dtype(a.dtype).itemsize
                 for a in arrays.values())
    if not all(isinstance(a, np.ndarray) for a in arrays.values()):  # h5py: read into memory
        space.need_memory(needed, f"writing {path.name}", "export from a NumPy load instead")
    # A file object, so numpy does not append ".npz" to the temporary name.
    with space.output(path, needed + 4096, f"writing {path.name}") as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **{k: np.asarray(a[:]) for k, a in arrays.items()})
        stamps.stamp_npz(tmp)
    return path
