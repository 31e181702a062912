"""Rows of an HDF5 dataset read through a memory map of its bytes instead of through HDF5.

HDF5 reads a shuffled batch row by row through its chunk cache (27 s for a 120k CIFAR-sized
epoch where the same rows in RAM take 0.09 s). Where a dataset's bytes lie in the file as
they are, a row is plain bytes at a known offset, and a batch is one NumPy gather from a
read-only map of the file: RAM speed once the file is in the page cache.

* **contiguous** (the layout dlsets writes since this module, uncompressed): rows are
  ``offset + i * row_bytes``; the map is a read-only ``np.memmap`` of the dataset's span.
* **chunked, uncompressed** (files written before, chunks of whole rows): each chunk's
  offset comes from HDF5's chunk index, read once; row ``i`` is in chunk ``i // rows``.
* anything else (compressed, filtered, chunks that cut rows, external or virtual storage,
  non-numeric types): None, and callers read through h5py as before.

Offsets are checked against the file's size, so a truncated file fails as FormatError
rather than reading past its end.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from ..errors import FormatError


def _numeric(dtype: np.dtype) -> bool:
    return dtype.kind in "biuf" and dtype.fields is None and dtype.subdtype is None


def row_map(dset: Any) -> Any | None:
    """A read-only array-like giving ``dset``'s rows from a memory map of its file (an
    ndarray view of an ``np.memmap``, or a :class:`ChunkRows`), or None where the bytes are
    not stored plainly (see the module docstring). ``dset`` is an open h5py Dataset."""
    dtype = np.dtype(dset.dtype)
    shape = tuple(dset.shape)
    if not shape or not _numeric(dtype) or shape[0] == 0 or 0 in shape:
        return None
    plist = dset.id.get_create_plist()
    if plist.get_nfilters() or plist.get_external_count() or dset.is_virtual:
        return None
    filename = dset.file.filename
    try:
        if dset.file.driver not in ("sec2", "stdio") or dset.file.mode != "r":
            return None  # an in-memory or split file, or one that may still change
        size = os.path.getsize(filename)
    except OSError:
        return None
    row = int(np.prod(shape[1:], dtype=np.int64)) * dtype.itemsize
    if dset.chunks is None:
        offset = dset.id.get_offset()
        if offset is None:  # never written: HDF5 gives its fill value
            return None
        _fits(filename, size, offset + row * shape[0])
        # a plain ndarray view: memmap's Python-level __getitem__ costs per batch
        return np.memmap(filename, dtype, "r", offset=offset, shape=shape).view(np.ndarray)
    chunks = tuple(dset.chunks)
    if chunks[1:] != shape[1:]:
        return None  # a chunk holds parts of rows: not worth a mapping
    offsets = _chunk_offsets(dset, chunks[0], shape[0])
    if offsets is None:
        return None
    _fits(filename, size, int(offsets.max()) + chunks[0] * row)
    return ChunkRows(filename, dtype, shape, chunks[0], offsets)


def rows_of(dset: Any) -> Any:
    """:func:`row_map` of ``dset``; a :class:`~dlsets.data.chunkorder.ChunkCache` of it where it
    is compressed in chunks of whole rows; else ``dset`` itself (the map is only a faster way:
    an OS or HDF5 refusal falls back to h5py). A file shorter than its data raises
    FormatError."""
    from .chunkorder import ChunkCache, rows_per_chunk

    try:
        rows = row_map(dset)
    except (OSError, ValueError, KeyError, RuntimeError):
        rows = None
    if rows is None and rows_per_chunk(dset):  # compressed: each chunk decoded once
        rows = ChunkCache(dset, rows_per_chunk(dset))
    return dset if rows is None else rows


def _fits(filename: str, size: int, end: int) -> None:
    if end > size:
        raise FormatError(f"{filename} is {size:,} bytes but its data runs to byte {end:,}: "
                          "the file is truncated; write it again")


def _chunk_offsets(dset: Any, rows: int, n: int) -> np.ndarray | None:
    """Byte offset of every chunk along the row axis, or None if one is unallocated or
    filtered (a filter mask set)."""
    count = -(-n // rows)
    offsets = np.full(count, -1, np.int64)

    def visit(info) -> None:
        if info.filter_mask == 0:
            offsets[info.chunk_offset[0] // rows] = info.byte_offset

    try:
        dset.id.chunk_iter(visit)  # one pass over the index (HDF5 >= 1.14)
    except AttributeError:
        for i in range(dset.id.get_num_chunks()):
            visit(dset.id.get_chunk_info(i))
    if (offsets < 0).any():
        return None
    return offsets


class ChunkRows:
    """Rows of an uncompressed chunked dataset gathered from a map of the whole file: a view
    of the file's bytes whose "row" ``o`` is the ``row_bytes`` bytes at offset ``o``, indexed
    by each wanted row's offset (one NumPy gather per batch). Indexing by ints, slices and
    integer arrays; read-only."""

    any_order = True  # read_rows indexes it directly, in any order

    def __init__(self, filename: str, dtype: np.dtype, shape: tuple, rows: int,
                 offsets: np.ndarray) -> None:
        self.dtype, self.shape, self.rows = np.dtype(dtype), tuple(shape), rows
        self.row_bytes = int(np.prod(shape[1:], dtype=np.int64)) * self.dtype.itemsize
        self._chunks = offsets
        raw = np.memmap(filename, np.uint8, "r")
        self._view = np.lib.stride_tricks.as_strided(
            raw, (len(raw) - self.row_bytes + 1, self.row_bytes), (1, 1), writeable=False)
        self._raw = raw

    ndim = property(lambda self: len(self.shape))

    def __len__(self) -> int:
        return self.shape[0]

    def offsets(self, idx: np.ndarray) -> np.ndarray:
        idx = np.asarray(idx, np.int64)
        return self._chunks[idx // self.rows] + (idx % self.rows) * self.row_bytes

    def __getitem__(self, key):
        n = self.shape[0]
        if isinstance(key, (int, np.integer)):
            i = int(key) + n if key < 0 else int(key)
            if not 0 <= i < n:
                raise IndexError(f"index {key} is out of range for {n} rows")
            return self[np.array([i])][0]
        idx = np.arange(n)[key] if isinstance(key, slice) else np.asarray(key, np.int64)
        idx = np.where(idx < 0, idx + n, idx)
        if idx.size and (idx.min() < 0 or idx.max() >= n):
            raise IndexError(f"an index is out of range for {n} rows")
        flat = self._view[self.offsets(idx.reshape(-1))]
        return flat.view(self.dtype).reshape(*idx.shape, *self.shape[1:])

    def __array__(self, dtype=None, copy=None):
        out = self[:]
        return out if dtype is None else out.astype(dtype)
