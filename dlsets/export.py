"""Write a loaded dataset as one HDF5 file (dlsets layout, see :mod:`dlsets.h5`) or npz."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from . import h5, space
from .errors import OptionError

if TYPE_CHECKING:
    from .dataset import Dataset

COMPRESSIONS = (None, "gzip", "lzf")
_BLOCK_BYTES = 64 << 20  # copy this much at a time so float32 copies never sit whole in memory


def check_compression(compression: str | None) -> None:
    if compression not in COMPRESSIONS:
        raise OptionError(
            f"compression={compression!r} is not supported; use one of {list(COMPRESSIONS)}"
        )


def write_hdf5(
    path: str | os.PathLike,
    splits: Mapping[str, tuple[Any, Any]],
    classes: Sequence[str],
    sources: Mapping[str, str] | None = None,
    *,
    compression: str | None = None,
    **attrs: Any,
) -> Path:
    """Write ``{split: (images, labels)}`` to ``path`` atomically, chunked by sample.

    Images keep their dtype and per-sample shape; labels are stored as (N,) uint8. The file
    carries ``classes``, ``sources`` (file -> sha256) and any extra ``attrs``.
    """
    check_compression(compression)
    path = Path(path)
    # Compressed output is smaller, by how much nobody knows before writing: ask for the whole.
    needed = sum(h5.hdf5_bytes(len(images), images.shape[1:], np.dtype(images.dtype).itemsize)
                 for images, _ in splits.values())
    with h5.atomic_hdf5(path, needed, f"writing {path.name}") as f:
        for split, (images, labels) in splits.items():
            n = len(images)
            dset, lset = h5.create_split(
                f, split, n, images.shape[1:], dtype=images.dtype, compression=compression
            )
            sample = max(1, int(np.prod(images.shape[1:])) * images.dtype.itemsize)
            step = max(1, _BLOCK_BYTES // sample)
            for start in range(0, n, step):
                stop = min(n, start + step)
                dset[start:stop] = np.asarray(images[start:stop])
                h5.check_writes(f)
            if n:
                lset[:] = np.asarray(labels[:], dtype=np.uint8)
        h5.write_attrs(f, classes, sources, **attrs)
    return path


def to_hdf5(ds: Dataset, path: str | os.PathLike, compression: str | None = None) -> Path:
    """``/train/images``, ``/train/labels``, ``/test/images``, ``/test/labels`` plus the
    ``classes`` and ``sources`` attributes; ``compression`` is None, "gzip" or "lzf"."""
    return write_hdf5(
        path,
        {s: (ds[s].images, ds[s].labels) for s in ("train", "test")},
        ds.classes,
        ds.info.get("sources", {}),
        compression=compression,
        dataset=ds.name,
    )


def to_npz(ds: Dataset, path: str | os.PathLike) -> Path:
    """An npz with ``x_train``, ``y_train``, ``x_test``, ``y_test`` (keras' mnist.npz keys)."""
    path = Path(path)
    parts = {"x_train": ds.train.images, "y_train": ds.train.labels,
             "x_test": ds.test.images, "y_test": ds.test.labels}
    needed = sum(int(np.prod(a.shape, dtype=object)) * np.dtype(a.dtype).itemsize
                 for a in parts.values())
    if not all(isinstance(a, np.ndarray) for a in parts.values()):  # h5py: read into memory
        space.need_memory(needed, f"writing {path.name}", "export from a NumPy load instead")
    # A file object, so numpy does not append ".npz" to the temporary name.
    with space.output(path, needed + 4096, f"writing {path.name}") as tmp, open(tmp, "wb") as f:
        np.savez(f, **{k: np.asarray(a[:]) for k, a in parts.items()})
    return path
