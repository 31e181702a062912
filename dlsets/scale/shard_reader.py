"""Read a folder of shards (see :mod:`dlsets.scale.shards`) as one lazy array, split across ranks.

``load_shards(DIR, rank=r, world_size=w)`` gives rank r the rows ``r * q .. (r + 1) * q - 1``
with ``q = count // w``: disjoint shares of equal size (the last ``count % w`` rows are left
out), contiguous, so each rank opens only the shards its rows lie in.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..data.dataset import Split
from ..data.fastread import ChunkRows, JoinedRows, rows_of
from ..data.rows import damaged_file
from ..errors import FormatError, OptionError
from .shard_index import check_file_name, check_labels, verify_file

log = logging.getLogger("dlsets")


class ShardedImages:
    """Rows ``lo .. hi - 1`` of a folder's shards as a read-only array-like: ``len``,
    ``shape``, ``dtype``, ``ndim``, and indexing by an int, a slice, an array of indices or
    a boolean mask (NumPy results; index 0 is row ``lo``), ``np.asarray(images)`` for all.

    Files are opened on first use in each process (h5py handles cannot cross a fork or a
    pickle), so it can be pickled into DataLoader workers or Ray tasks.
    """

    def __init__(self, folder: Path, doc: dict, lo: int, hi: int, field: str = "images") -> None:
        self.folder = Path(folder)
        self.format = doc["format"]
        self.field = field  # "masks": the same rows' masks
        masks = field == "masks"
        self.dtype = np.dtype(doc["mask_dtype" if masks else "dtype"])
        self.image_shape = tuple(doc["mask_shape" if masks else "image_shape"])
        self.shape = (hi - lo, *self.image_shape)
        self._lo = lo
        self._doc = {k: doc[k] for k in ("count", "image_shape", "dtype", "mask_shape",
                                         "mask_dtype") if k in doc}
        self._doc["nshards"] = len(doc["shards"])
        self._pieces = []  # (first position here, file, first row in file, rows, entry)
        for e in doc["shards"]:
            a, b = max(lo, e["rows"][0]), min(hi, e["rows"][1])
            if a < b:
                self._pieces.append((a - lo, e["file"], a - e["rows"][0], b - a, e))
        self._starts = [p[0] for p in self._pieces]
        self._shift = np.array([p[2] - p[0] for p in self._pieces], np.int64)  # pos -> row
        self._handles: dict[str, Any] = {}
        self._joined: JoinedRows | bool | None = None  # False: the sources are not all maps
        self._files: list[Any] = []
        self._pid = os.getpid()

    ndim = property(lambda self: len(self.shape))
    any_order = True  # index arrays need not be sorted (dlsets.splits.read_rows reads directly)

    @property
    def chunk_rows(self) -> int | None:
        """Rows per unit of the chunk-aware epoch order (:mod:`dlsets.data.chunkorder`) when
        the shards are compressed HDF5 (as the first one's layout says), else None: a full
        shuffle would decode a chunk for nearly every row."""
        if "_chunk_rows" not in self.__dict__:
            self._chunk_rows = None
            if self.format == "hdf5" and self._pieces:
                from ..data.chunkorder import rows_per_chunk

                # opened and closed here: handles made in this process must not reach a fork
                with _open_h5(self.folder / self._pieces[0][1]) as f:
                    dset = f.get(f"train/{self.field}")
                    if dset is not None and hasattr(dset, "chunks"):
                        self._chunk_rows = rows_per_chunk(dset)
        return self._chunk_rows

    @property
    def chunk_starts(self) -> np.ndarray | None:
        """The first position of every unit of :attr:`chunk_rows` rows, each shard's own (a
        unit never spans two shards, and matches the shard's chunks), or None."""
        r = self.chunk_rows
        if not r:
            return None
        parts = []
        for pos, _, row, count, _ in self._pieces:
            inner = np.arange((row // r + 1) * r, row + count, r, dtype=np.int64)
            parts.append(np.concatenate([[pos], pos + inner - row]).astype(np.int64))
        return np.concatenate(parts)

    def __len__(self) -> int:
        return self.shape[0]

    def __repr__(self) -> str:
        return (f"ShardedImages({str(self.folder)!r}, {self.format}, {self.dtype} {self.shape}, "
                f"{len(self._pieces)} shard(s))")

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_handles"], state["_files"], state["_joined"] = {}, [], None
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._pid = os.getpid()

    def open_all(self) -> None:
        """Open every shard these rows lie in, with the checks a read makes on opening."""
        for piece in self._pieces:
            self._source(piece)

    def close(self) -> None:
        """Close the files this process opened (they reopen on the next read)."""
        for f in self._files:
            f.close()
        self._handles, self._files, self._joined = {}, [], None

    def _source(self, piece: tuple):
        """The (rows, ...) array of a piece's whole shard file: an h5py dataset or a map."""
        if self._pid != os.getpid():  # forked: the parent's handles are not ours
            self._handles, self._files, self._pid = {}, [], os.getpid()
            self._joined = None
        _, file, _, _, entry = piece
        arr = self._handles.get(file)
        if arr is None:
            path = self.folder / file
            if self.format == "hdf5":

                from .shard_index import check_hdf5_shard

                f = _open_h5(path)
                self._files.append(f)
                check_hdf5_shard(f, path, entry, self._doc)
                arr = f[f"train/{self.field}"]
            else:
                from .tarshards import open_images, open_masks

                d = self._doc
                mask = (d["mask_shape"], d["mask_dtype"]) if "mask_shape" in d else (None, None)
                args = (path, entry["count"], entry["rows"][0], d["image_shape"], d["dtype"])
                arr = open_masks(*args, *mask) if self.field == "masks" else \
                    open_images(*args, *mask)[0]
            if arr.shape != (entry["count"], *self.image_shape) or arr.dtype != self.dtype:
                raise FormatError(f"{path} holds {arr.dtype} {arr.shape}, not the "
                                  f"{self.dtype} {(entry['count'], *self.image_shape)} its "
                                  "index records: run `dlsets verify` on the folder")
            if self.format == "hdf5":
                arr = rows_of(arr)  # a map of plainly stored rows: RAM speed
            self._handles[file] = arr
            self._joined = None  # made again over the sources open now
        return arr

    def _read(self, pos: np.ndarray) -> np.ndarray:
        shape = (len(pos), *self.image_shape)
        if not len(pos):
            return np.empty(shape, self.dtype)
        which = np.searchsorted(self._starts, pos, side="right") - 1
        if which[0] == which[-1] and (which == which[0]).all():  # one shard: no scatter
            piece = self._pieces[int(which[0])]
            src = self._source(piece)
            if isinstance(src, np.ndarray):
                return np.take(src, pos - piece[0] + piece[2], axis=0, mode="clip")
        pieces = np.unique(which)
        sources = [self._source(self._pieces[k]) for k in pieces]
        joined = self._join()
        if joined:  # maps of every shard: one gather, as from an array in RAM
            # (no output allocated before it: a second batch-sized block per read costs
            # fresh pages from the allocator)
            return joined.gather(which, pos + self._shift[which]).view(self.dtype).reshape(shape)
        out = np.empty(shape, self.dtype)
        if all(isinstance(src, np.ndarray) for src in sources):
            # maps: gather each shard's rows into a run of a buffer, then one gather back
            # into the asked order (gathers are twice as fast as a scatter per shard)
            order = np.argsort(which, kind="stable")
            ends = np.cumsum(np.bincount(which, minlength=len(self._pieces)))
            buf = np.empty_like(out)
            for k, src in zip(pieces.tolist(), sources, strict=True):
                a, b = ends[k - 1] if k else 0, ends[k]
                piece = self._pieces[k]
                np.take(src, pos[order[a:b]] - piece[0] + piece[2], axis=0, out=buf[a:b],
                        mode="clip")
            back = np.empty_like(order)
            back[order] = np.arange(len(order))
            return np.take(buf, back, axis=0, out=out, mode="clip")
        for k, src in zip(pieces.tolist(), sources, strict=True):
            piece = self._pieces[k]
            sel = np.flatnonzero(which == k)
            rows = pos[sel] - piece[0] + piece[2]
            if isinstance(src, np.ndarray):  # a map: any order, one gather
                out[sel] = np.take(src, rows, axis=0)
                continue
            if isinstance(src, ChunkRows):  # rows checked above: a gather, no checks again
                out[sel] = src.gather(rows)
                continue
            if not _is_h5py(src):  # ChunkCache, a tar shard's reader
                out[sel] = src[rows]
                continue
            lo, hi = int(rows.min()), int(rows.max()) + 1
            with damaged_file(src, lo, hi):
                if hi - lo == len(rows) and np.all(np.diff(rows) == 1):
                    out[sel] = src[lo:hi]  # a run: one hyperslab
                elif hi - lo <= 4 * len(rows):
                    out[sel] = src[lo:hi][rows - lo]  # dense enough: read the span
                else:
                    uniq, inverse = np.unique(rows, return_inverse=True)
                    out[sel] = src[uniq][inverse]  # h5py wants increasing indices
        return out

    def _join(self) -> JoinedRows | None:
        """One view over the maps of the shards opened so far, or None where one is not a
        map (a compressed shard, a tar shard, a map refused)."""
        if self._joined is None:
            parts = [self._handles.get(p[1]) for p in self._pieces]
            try:
                self._joined = JoinedRows(parts)
            except (ValueError, OverflowError, TypeError):
                self._joined = False
        return self._joined or None

    def __getitem__(self, key):
        rest = ()
        if isinstance(key, tuple):
            key, rest = (key[0], key[1:]) if key else (slice(None), ())
        n = len(self)
        if isinstance(key, (int, np.integer)):
            i = int(key) + n if key < 0 else int(key)
            if not 0 <= i < n:
                raise IndexError(f"index {key} is out of range for {n} images")
            return self._read(np.array([i]))[0][rest]
        if isinstance(key, slice):
            pos = np.arange(n)[key]
        else:
            pos = np.asarray(key)
            if pos.dtype == bool:
                if pos.shape != (n,):
                    raise IndexError(f"boolean index of shape {pos.shape} for {n} images")
                pos = np.flatnonzero(pos)
            elif not np.issubdtype(pos.dtype, np.integer):
                raise IndexError(f"cannot index images with {pos.dtype} values")
            pos = np.where(pos < 0, pos + n, pos)
            if pos.size and (pos.min() < 0 or pos.max() >= n):
                raise IndexError(f"an index is out of range for {n} images")
        out = self._read(pos.reshape(-1)).reshape(*pos.shape, *self.image_shape)
        return out[(slice(None),) * pos.ndim + rest] if rest else out

    def __array__(self, dtype=None, copy=None):
        out = self[:]
        return out if dtype is None else out.astype(dtype)

    def __iter__(self):
        for s in range(0, len(self), 1024):
            yield from self[s:s + 1024]


def _is_h5py(a: object) -> bool:
    return type(a).__module__.startswith("h5py")


def _labels(folder: Path, doc: dict, lo: int, hi: int) -> np.ndarray:
    parts = []
    for e in doc["shards"]:
        a, b = max(lo, e["rows"][0]), min(hi, e["rows"][1])
        if a >= b:
            continue
        path = folder / e["file"]
        if doc["format"] == "hdf5":
            from .shard_index import check_hdf5_shard

            with _open_h5(path) as f:
                check_hdf5_shard(f, path, e, doc)
                parts.append(np.asarray(f["train/labels"][a - e["rows"][0]:b - e["rows"][0]]))
        else:
            from .tarshards import open_images

            _, lab = open_images(path, e["count"], e["rows"][0], tuple(doc["image_shape"]),
                                 np.dtype(doc["dtype"]), doc.get("mask_shape"),
                                 doc.get("mask_dtype"))
            parts.append(lab[a - e["rows"][0]:b - e["rows"][0]])
        check_labels(parts[-1], path, len(doc["classes"]))
    y = np.concatenate(parts) if parts else np.zeros(0, np.uint8)
    return y.astype(np.uint8) if not len(y) or int(y.max()) <= 255 else y.astype(np.int64)


def _open_h5(path: Path):
    import h5py

    try:
        return h5py.File(path, "r")
    except OSError as exc:
        raise FormatError(f"{path} cannot be opened as HDF5 ({exc}): run `dlsets verify "
                          f"{path.parent}/`") from None


def load_shards(folder: str | os.PathLike, *, rank: int = 0, world_size: int = 1,
                verify: bool = False) -> Split:
    """Rank ``rank``'s share of a complete folder of shards as a :class:`~dlsets.Split`:
    ``images`` a lazy :class:`ShardedImages` (N, ...), ``labels`` (N,) uint8 in memory, and
    ``masks`` lazy like the images for a set expanded with masks (else None).

    Shares are disjoint and all of ``count // world_size`` rows (the last ``count %
    world_size`` are in none). Needs ``index.json`` (FormatError otherwise), checked field by
    field (:mod:`dlsets.scale.shard_index`); each file's size is checked against it and each shard's
    own rows on opening (swapped or foreign files are refused). ``verify=True`` also hashes
    this rank's shards against their sha256 (``dlsets verify DIR/`` hashes them all).
    """
    from .shard_index import read_index

    folder = Path(folder)
    for what, value, low in (("world_size", world_size, 1), ("rank", rank, 0)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise OptionError(f"{what}={value!r} is not allowed: give an integer >= {low}")
    if rank >= world_size:
        raise OptionError(f"rank={rank} is not allowed with world_size={world_size}: give a "
                          f"rank in 0..{world_size - 1}")
    if not folder.is_dir():
        what = ("not a folder of shards (a file: one HDF5 file that dlsets wrote is read with "
                "dlsets.load(path))" if folder.exists() else "no such folder")
        raise OptionError(f"{folder}: {what}")
    doc = read_index(folder)
    total = int(doc["count"])
    share = total // world_size
    if share == 0:
        raise OptionError(f"{folder} holds {total} samples, fewer than world_size="
                          f"{world_size}: every rank needs at least one")
    lo = int(rank) * share
    for e in doc["shards"]:
        mine = e["rows"][0] < lo + share and e["rows"][1] > lo
        # the names are single components (checked); the rank's own files are also confined
        path = check_file_name(folder, e["file"], doc["format"]) if mine else folder / e["file"]
        if not path.is_file() or path.stat().st_size != e["size"]:
            raise FormatError(f"{path} is missing or not the size its index records: run "
                              f"`dlsets verify {folder}/`, then the expansion again")
    if total % world_size:
        log.info("%d of %d samples are left out so that %d ranks get %d each",
                 total % world_size, total, world_size, share)
    if verify:
        for e in doc["shards"]:
            if e["rows"][0] < lo + share and e["rows"][1] > lo:
                verify_file(folder / e["file"], e)
    masks = ShardedImages(folder, doc, lo, lo + share, "masks") if "mask_shape" in doc else None
    return Split(ShardedImages(folder, doc, lo, lo + share),
                 _labels(folder, doc, lo, lo + share), masks)


def check_shards(folder: str | os.PathLike) -> None:
    """Every structure check :func:`load_shards` and its reads make, on every shard (index,
    names, sizes, each file's own rows, shapes and labels; not the hashes): FormatError or
    OptionError saying what the reader refuses. ``dlsets verify DIR/`` runs it."""
    split = load_shards(folder)
    for rows in (split.images, split.masks):
        if rows is not None:
            try:
                rows.open_all()
            finally:
                rows.close()
