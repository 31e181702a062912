"""Shuffled epochs of compressed HDF5 datasets: a chunk-aware order and a cache of chunks.

A compressed row can only be read by decoding its whole chunk, so a full shuffle decodes
each chunk once per row it holds. Here an epoch is instead:

1. the chunks (runs of ``rows`` rows: ``0 .. rows - 1``, ``rows .. 2 * rows - 1``, ...) in
   the order of Philox keys of ``(seed, epoch)``;
2. cut into windows of ``WINDOW`` chunks (the shuffle buffer; the last one shorter);
3. the rows of each window in the order of their own Philox keys.

Every row comes exactly once per epoch, the same seed gives the same order everywhere, and
as ids follow rows (``epoch * n + row``) every (epoch, sample) keeps its own transform. A
batch holds rows of at most ``WINDOW`` units, which :class:`ChunkCache` decodes once each
and keeps while the window is read (a unit is one chunk, or a run of chunks of about
``UNIT_BYTES``: 16 MB of decoded rows per window, 32 MB kept per reader, for dlsets'
files). With 256 units per window the mean per-batch label entropy stays within 3% of a
full shuffle's even when the file's rows are grouped by class (units of one class each):
each window draws 256 units at random.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..augment import params
from .rows import damaged_file, read_rows

WINDOW = 256  # units (runs of chunks) in the shuffle buffer
UNIT_BYTES = 1 << 16  # chunks are read in runs of about this many bytes: one h5py call each
_CHUNK_STREAM = 0xC4C4  # Philox streams of the seed: the chunk order, the rows in a window
_ROW_STREAM = 0xC4C5


def rows_per_chunk(dset: Any) -> int | None:
    """Rows per chunk of a compressed (filtered) h5py dataset chunked by whole rows with more
    than one row a chunk, else None (read in any order at the same cost)."""
    if not type(dset).__module__.startswith("h5py") or dset.chunks is None:
        return None
    chunks, shape = tuple(dset.chunks), tuple(dset.shape)
    if chunks[1:] != shape[1:] or chunks[0] < 2:
        return None
    if not dset.id.get_create_plist().get_nfilters():
        return None
    chunk = int(np.prod(chunks, dtype=np.int64)) * np.dtype(dset.dtype).itemsize
    return int(chunks[0]) * max(1, UNIT_BYTES // max(1, chunk))


def epoch_order(n: int, rows: int, epoch: int, *, seed: int = 0, window: int = WINDOW,
                starts: np.ndarray | None = None) -> np.ndarray:
    """The chunk-aware order of ``range(n)`` in ``epoch`` (see the module docstring).

    ``starts``: the first row of every unit, ascending from 0, where units are not all
    ``rows`` long (a folder of shards: each shard's units, none across two shards); the
    default ``0, rows, 2 * rows, ...`` gives the order of a single file."""
    if starts is None:
        starts = np.arange(0, n, rows, dtype=np.int64)
    starts = np.asarray(starts, np.int64)
    count = len(starts)
    lengths = np.diff(np.append(starts, n))
    keys = params.generator(seed, _CHUNK_STREAM, epoch * count, 1).bit_generator.random_raw(
        count)
    chunks = np.argsort(keys, kind="stable")
    row_keys = params.generator(seed, _ROW_STREAM, epoch * n, 1).bit_generator.random_raw(n)
    parts = []
    for w in range(0, count, window):
        members = chunks[w:w + window]
        size = lengths[members]
        # the rows of each member unit, unit after unit
        first = np.repeat(starts[members] - (np.cumsum(size) - size), size)
        idx = first + np.arange(int(size.sum()), dtype=np.int64)
        parts.append(idx[np.argsort(row_keys[idx], kind="stable")])
    return np.concatenate(parts).astype(np.int64) if parts else np.empty(0, np.int64)


def batch_entropy(labels: np.ndarray, order: np.ndarray, batch_size: int) -> float:
    """Mean Shannon entropy (bits) of the labels of each full batch of ``order``: how well
    batches are mixed (a full shuffle's is the reference)."""
    y = np.asarray(labels)[np.asarray(order)]
    full = len(y) // batch_size
    if full == 0:
        raise ValueError(f"no full batch of {batch_size} in {len(y)} samples")
    y = y[:full * batch_size].reshape(full, batch_size)
    k = int(y.max()) + 1
    counts = np.zeros((full, k), np.int64)
    np.add.at(counts, (np.repeat(np.arange(full), batch_size), y.reshape(-1)), 1)
    p = counts / batch_size
    with np.errstate(divide="ignore", invalid="ignore"):
        h = -np.where(p > 0, p * np.log2(p), 0.0).sum(axis=1)
    return float(h.mean())


class ChunkCache:
    """Rows of a compressed chunked h5py dataset, read a unit (``rows`` rows: whole chunks)
    at a time into a buffer of ``2 * WINDOW`` units (least recently used out), so that an
    epoch in :func:`epoch_order` decodes each chunk once. Integer-array and slice indexing in
    any order, ``shape``, ``dtype``, ``len``."""

    any_order = True  # read_rows indexes it directly, in any order

    def __init__(self, dset: Any, rows: int) -> None:
        self.dset, self.rows = dset, rows
        self.shape, self.dtype = tuple(dset.shape), np.dtype(dset.dtype)
        self._keep = 2 * WINDOW
        self._slot = np.full(-(-self.shape[0] // rows), -1, np.int64)  # unit -> slot
        self._unit = np.full(self._keep, -1, np.int64)  # slot -> unit
        self._used = np.zeros(self._keep, np.int64)  # slot -> tick of its last use
        self._tick = 0
        self._buf: np.ndarray | None = None

    ndim = property(lambda self: len(self.shape))

    def __len__(self) -> int:
        return self.shape[0]

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_buf": None, "_slot": self._slot * 0 - 1,
                "_unit": self._unit * 0 - 1}

    def __getitem__(self, key):
        n, r = self.shape[0], self.rows
        if isinstance(key, (int, np.integer)):
            return self[np.array([key])][0]
        idx = np.arange(n)[key] if isinstance(key, slice) else np.asarray(key, np.int64)
        idx = np.where(idx < 0, idx + n, idx).reshape(-1)
        if idx.size and (idx.min() < 0 or idx.max() >= n):
            raise IndexError(f"an index is out of range for {n} rows")
        which = idx // r
        units = np.unique(which)
        if len(units) > self._keep:  # more than the buffer holds: straight from HDF5
            with damaged_file(self.dset, int(idx.min()), int(idx.max()) + 1):
                return read_rows(self.dset, idx)
        if self._buf is None:
            self._buf = np.empty((self._keep * r, *self.shape[1:]), self.dtype)
        self._tick += 1
        present = units[self._slot[units] >= 0]
        self._used[self._slot[present]] = self._tick
        missing = units[self._slot[units] < 0]
        if len(missing):
            free = np.argsort(self._used, kind="stable")[:len(missing)]
            gone = self._unit[free]
            self._slot[gone[gone >= 0]] = -1
            for u, slot in zip(missing.tolist(), free.tolist(), strict=True):
                lo, hi = u * r, min(n, (u + 1) * r)
                with damaged_file(self.dset, lo, hi):
                    self._buf[slot * r:slot * r + hi - lo] = self.dset[lo:hi]
            self._slot[missing], self._unit[free] = free, missing
            self._used[free] = self._tick
        return self._buf[self._slot[which] * r + idx - which * r]
