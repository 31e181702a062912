"""HDF5 files in the dlsets layout, written atomically.

Layout: ``/<split>/images`` (N, ...) and ``/<split>/labels`` (N,), chunked along the sample
axis (an unlabelled split, STL-10's unlabeled, has no ``labels``), plus ``/<split>/masks``
(N, H, W) for segmentation data; file attributes ``classes``
(names) and ``sources`` (JSON of source file -> sha256).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager

import numpy as np

from .atomic import replacing

CHUNK_BYTES = 1 << 16  # small chunks keep random access by sample cheap


@contextmanager
def atomic_hdf5(path: str | os.PathLike) -> Iterator:
    """Write to a temporary HDF5 file beside ``path``; it becomes ``path`` on success only."""
    import h5py

    with replacing(path) as tmp, h5py.File(tmp, "w") as f:
        yield f


def create_split(
    f,
    split: str,
    count: int,
    image_shape: Sequence[int],
    *,
    dtype: np.dtype | str = np.uint8,
    compression: str | None = None,
    labels: bool = True,
):
    """Create empty ``/<split>/images`` and ``/<split>/labels``; returns both datasets (labels
    None when ``labels=False``: an unlabelled split)."""
    image_shape = tuple(image_shape)
    sample_bytes = int(np.prod(image_shape)) * np.dtype(dtype).itemsize
    rows = max(1, min(count, CHUNK_BYTES // max(1, sample_bytes)))
    group = f.require_group(split)
    images = group.create_dataset(
        "images",
        shape=(count, *image_shape),
        dtype=dtype,
        chunks=(rows, *image_shape) if count else None,
        compression=compression,
    )
    if not labels:
        return images, None
    labels = group.create_dataset(
        "labels",
        shape=(count,),
        dtype=np.uint8,
        chunks=(max(1, min(count, 1 << 14)),) if count else None,
        compression=compression,
    )
    return images, labels


def create_masks(
    f,
    split: str,
    count: int,
    mask_shape: Sequence[int],
    *,
    dtype: np.dtype | str = np.uint8,
    compression: str | None = None,
):
    """Create an empty ``/<split>/masks`` (segmentation class maps), chunked like the images."""
    mask_shape = tuple(mask_shape)
    sample_bytes = int(np.prod(mask_shape)) * np.dtype(dtype).itemsize
    rows = max(1, min(count, CHUNK_BYTES // max(1, sample_bytes)))
    return f.require_group(split).create_dataset(
        "masks",
        shape=(count, *mask_shape),
        dtype=dtype,
        chunks=(rows, *mask_shape) if count else None,
        compression=compression,
    )


def write_attrs(
    f, classes: Sequence[str], sources: Mapping[str, str] | None = None, **extra
) -> None:
    """Store class names, source checksums and any extra scalar attributes on the file."""
    import h5py

    f.attrs["classes"] = np.array(list(classes), dtype=h5py.string_dtype())
    f.attrs["sources"] = json.dumps(dict(sources or {}), sort_keys=True)
    for key, value in extra.items():
        f.attrs[key] = value
