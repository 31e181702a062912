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

A shard folder's maps are joined (:class:`JoinedRows`): one view over their address range,
so a batch across shards is one gather, not one per shard and a second to order them.

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
        return self.gather(idx.reshape(-1)).reshape(*idx.shape, *self.shape[1:])

    def gather(self, idx: np.ndarray) -> np.ndarray:
        """Rows ``idx`` (a 1-D int64 array of rows already in range: not checked) as an
        (len(idx), ...) array: what indexing does after its checks, for callers that have
        checked them (a shard folder's reader, once per shard of every batch)."""
        return self._view[self.offsets(idx)].view(self.dtype).reshape(
            len(idx), *self.shape[1:])

    def __array__(self, dtype=None, copy=None):
        out = self[:]
        return out if dtype is None else out.astype(dtype)


def _runs(src: Any) -> tuple[int, np.ndarray, int, int] | None:
    """(rows per run, address of each run's first row, bytes from a row to the next in a
    run, row bytes) of a map: an ndarray whose rows are each contiguous (a memory map, a tar
    shard's strided view: one run) or a ChunkRows (a run per chunk); None for others."""
    if isinstance(src, ChunkRows):
        return src.rows, src._raw.ctypes.data + src._chunks, src.row_bytes, src.row_bytes
    if (isinstance(src, np.ndarray) and src.ndim and len(src) and src.strides[0] > 0
            and src[0].flags.c_contiguous):
        return len(src), np.array([src.ctypes.data], np.int64), src.strides[0], src[0].nbytes
    return None


class JoinedRows:
    """Rows of several maps (ndarray maps whose rows are contiguous, or :class:`ChunkRows`,
    of one row size: e.g. the shard files of a folder) gathered in ONE NumPy gather, as
    from one array.

    The view spans the addresses from the lowest map to the end of the highest; what lies
    between the maps is never read: every offset gathered is a row of one of ``parts`` (rows
    in range, offsets checked against each file's size when its map was made), and the maps
    are kept alive here. Without it a batch spread over k shards costs k gathers and a
    scatter (or a second gather) of the whole batch: twice the copying of an array in RAM.
    """

    def __init__(self, parts: list) -> None:
        """``parts``: a map per part, None for a part not opened (never gathered from)."""
        info = [None if p is None else _runs(p) for p in parts]
        if not any(info) or any(p is not None and i is None
                                for p, i in zip(parts, info, strict=True)):
            raise ValueError("every opened part must be a map")
        sizes = {i[3] for i in info if i}
        if len(sizes) != 1:
            raise ValueError("parts of different row sizes")
        self.row_bytes = row = sizes.pop()
        self._keep = parts  # the maps the view points into stay mapped while it lives
        lo = min(int(i[1].min()) for i in info if i)
        hi = max(int(i[1].max()) + (i[0] - 1) * i[2] + row for i in info if i)
        # the ChunkRows trick over the whole span: "row" o is the row_bytes bytes at o
        import ctypes

        span = np.frombuffer((ctypes.c_char * (hi - lo)).from_address(lo), np.uint8)
        self._view = np.lib.stride_tricks.as_strided(span, (hi - lo - row + 1, row), (1, 1),
                                                     writeable=False)
        self._per = np.array([i[0] if i else 1 for i in info], np.int64)
        self._step = np.array([i[2] if i else 0 for i in info], np.int64)
        starts = np.cumsum([0] + [len(i[1]) if i else 0 for i in info])
        self._first = starts[:-1].astype(np.int64)
        self._runs = np.concatenate([i[1] - lo for i in info if i]).astype(np.int64)

    def gather(self, part: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Row ``rows[j]`` of part ``part[j]`` for every j (in range, of opened parts: not
        checked) as a (len, row_bytes) uint8 array."""
        per = self._per[part]
        offsets = self._runs[self._first[part] + rows // per] + (rows % per) * self._step[part]
        return self._view[offsets]
