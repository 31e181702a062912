"""Rows of any array-like as NumPy arrays: :func:`read_rows` reads them the way the storage
likes (h5py: distinct rows once, in increasing order), :class:`Rows` is a lazy row subset.

Readers that take rows in any order at the same cost (the chunk maps of
:mod:`dlsets.data.fastread` and :mod:`dlsets.data.chunkorder`, the shard readers) say so with
a true ``any_order`` attribute; that attribute, not their classes, is what is checked here, so
those modules can use this one without a circle.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np


def take(array, idx: np.ndarray):
    """Rows ``idx`` of ``array``: a NumPy copy for NumPy arrays, a :class:`Rows` view else."""
    if isinstance(array, np.ndarray):
        return np.asarray(array)[idx]  # a plain array, also from a memory map
    return Rows(array, idx)


class Rows:
    """Rows ``indices`` of an array-like (e.g. an h5py dataset), read when indexed: ``len``,
    ``shape``, ``dtype``, ``rows[i]``, ``rows[a:b]``, ``rows[index_array]`` and
    ``np.asarray(rows)``. Reads go to the base in increasing row order (as h5py requires)."""

    def __init__(self, base: Any, indices: np.ndarray) -> None:
        self.base = base
        self.indices = np.asarray(indices, dtype=np.int64)
        self.shape = (len(self.indices), *tuple(base.shape)[1:])
        self.dtype = np.dtype(base.dtype)
        self.ndim = len(self.shape)

    def __len__(self) -> int:
        return len(self.indices)

    def __repr__(self) -> str:
        return f"Rows({self.shape}, {self.dtype}, of {type(self.base).__name__})"

    def __getitem__(self, key):
        if isinstance(key, slice):
            return read_rows(self.base, self.indices[key])
        if isinstance(key, tuple):
            if not key:
                return self[:]
            rows = self[key[0]]
            one = not isinstance(key[0], slice) and np.ndim(key[0]) == 0
            return rows[key[1:]] if one else rows[(slice(None), *key[1:])]
        idx = np.asarray(key)
        if idx.ndim == 0:
            return read_rows(self.base, self.indices[int(idx)][None])[0]
        return read_rows(self.base, self.indices[idx])

    def __array__(self, dtype=None, copy=None):
        out = self[:]
        return out if dtype is None else out.astype(dtype)


def read_rows(base: Any, idx: np.ndarray) -> np.ndarray:
    """``base[idx]`` as a NumPy array for any array-like: NumPy indexes directly; others read
    each distinct row once, in increasing order (h5py's rule for fancy reads), and a run of
    consecutive rows as one slice."""
    idx = np.asarray(idx, dtype=np.int64)
    if isinstance(base, np.ndarray):
        return np.take(base, idx, axis=0)  # twice as fast as base[idx] for rows of images
    if getattr(base, "any_order", False):  # ChunkRows, ChunkCache, shard readers
        return base[idx]  # reads rows in any order at the same cost
    if isinstance(base, Rows):
        return read_rows(base.base, base.indices[idx])
    if len(idx) == 0:
        return np.empty((0, *tuple(base.shape)[1:]), np.dtype(base.dtype))
    unique, inverse = np.unique(idx, return_inverse=True)
    lo, hi = int(unique[0]), int(unique[-1])
    if hi - lo + 1 == len(unique):
        block = np.asarray(base[lo:hi + 1])
    elif (hi - lo + 1) <= 4 * len(unique):
        block = np.asarray(base[lo:hi + 1])[unique - lo]  # dense: one read, then pick
    else:
        block = np.asarray(base[unique])
    if len(unique) == len(idx) and np.array_equal(unique, idx):
        return block
    return block[inverse.reshape(-1)]


@contextmanager
def damaged_file(dset: Any, lo: int, hi: int) -> Iterator[None]:
    """HDF5's read errors inside (a chunk its filter cannot decode: a damaged file) as a
    FormatError naming the file, the dataset and the rows."""
    try:
        yield
    except OSError as exc:
        from ..errors import FormatError

        where = getattr(getattr(dset, "file", None), "filename", "?")
        raise FormatError(f"{where}: {getattr(dset, 'name', 'a dataset')} rows {lo}..{hi - 1} "
                          f"cannot be read ({exc}): the file is damaged. Write it again (for a "
                          "shard folder, `dlsets verify DIR/` finds the damaged shards)") from None
