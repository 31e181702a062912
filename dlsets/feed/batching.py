"""Augmented batches for training loops, framework-neutral; the torch, keras and tf.data
adapters (``dlsets.torch``, ``dlsets.keras``, ``dlsets.tfdata``) are thin layers over it.

**The id rule.** Sample ``j`` of a dataset of ``n`` samples, in epoch ``e``, is augmented as
sample ``e * n + j`` of the augmenter's stream (:func:`sample_ids`); a further fetch of it in
the same epoch (padding for equal shares) takes an id of a disjoint range (:mod:`dlsets.feed.ids`).
So every fetch has its own transform, and the same seed gives the same transforms whatever the
batch size, shuffling, number of workers, their scheduling or the number of ranks.

**An epoch** of :class:`Batches` is the order of ``range(n)`` sorted by Philox keys of
``(seed, epoch)`` (or ``range(n)`` itself without shuffling; for a compressed HDF5 dataset,
whole chunks in a shuffle buffer: :mod:`dlsets.data.chunkorder`); with ``world_size`` ranks it is
cut
into equal shares, rank ``r`` taking positions ``r, r + world_size, ...``: the last
``n % world_size`` positions are left out of that epoch (or, with ``pad=True``, the order is
extended with its own first samples, as ``DistributedSampler`` does). Batches are consecutive
``batch_size`` runs of the share, the last one shorter unless ``drop_last``.

Batches are read from any array-like with ``len`` and row indexing (NumPy arrays, memory maps,
HDF5 datasets, :class:`~dlsets.data.splits.Rows`), augmented whole through the batched engine,
then converted: ``dtype``, ``channels`` and ``normalize`` (after augmentation, so the
augmenter's ``fill`` is in the stored units: 0 is black, which normalises to ``-mean / std``).
"""

from __future__ import annotations

import os
import threading
from typing import Any

import numpy as np

from ..augment import params
from ..augment.functional import IMAGE_DTYPES
from ..augment.layout import CHANNEL_COUNTS, CHANNELS
from ..common.tensors import index
from ..data.dataset import Split
from ..data.rows import Rows, read_rows
from ..data.stats import Stats, from_registry
from ..errors import OptionError
from .ids import FETCHES, check_epoch, fetch_ids, sample_ids

DTYPES = (None, "uint8", "float32")
_ORDER_STREAM = 0x0DE2  # the Philox stream of the seed that orders each epoch
MAX_WORLD_SIZE = 1 << 20  # ranks of one job: more than any cluster runs
__all__ = ["Batches", "Feed", "batches", "check_rank", "epoch_order", "sample_ids", "shard"]


# ------------------------------------------------------------------------- option checks
def _integer(name: str, value: object, low: int) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or (
            value < low):
        raise OptionError(f"{name}={value!r} is not allowed: give an integer >= {low}")
    return int(value)


def check_rank(rank: object, world_size: object) -> tuple[int, int]:
    """``(rank, world_size)`` as ints with 0 <= rank < world_size, or OptionError."""
    if isinstance(world_size, (int, np.integer)) and world_size > MAX_WORLD_SIZE:
        raise OptionError(f"world_size={world_size!r} is not allowed: give an integer from 1 to "
                          f"{MAX_WORLD_SIZE:,}")
    world_size = _integer("world_size", world_size, 1)
    if isinstance(rank, (bool, np.bool_)) or not isinstance(rank, (int, np.integer)) or not (
            0 <= rank < world_size):
        raise OptionError(f"rank={rank!r} is not allowed with world_size={world_size}: give an "
                          f"integer in 0..{world_size - 1}")
    return int(rank), world_size


def _normalize(value: object, channels: int) -> tuple[np.ndarray, np.ndarray] | None:
    if value is None:
        return None
    how = ("give normalize=(mean, std) in [0, 1] units (numbers, or one per channel), "
           "normalize=ds.stats, or a built-in dataset's name")
    if isinstance(value, str):
        from ..sources import registry

        spec = registry.get(value)
        value = from_registry(spec.stats)
        if value is None:
            raise OptionError(f"normalize={spec.name!r}: no published mean and std for "
                              f"{spec.name}; use normalize=dlsets.load({spec.name!r}).stats, "
                              "which measures them")
    if not isinstance(value, (tuple, list, Stats)) or len(value) != 2:
        raise OptionError(f"normalize={value!r} is not allowed: {how}")
    out = []
    for name, v in zip(("mean", "std"), value, strict=True):
        a = np.atleast_1d(np.asarray(v, dtype=np.float64)) if _numbers(v) else None
        if a is None or a.ndim != 1 or len(a) not in (1, channels) or not np.isfinite(a).all():
            raise OptionError(f"normalize {name}={v!r} is not allowed for {channels}-channel "
                              f"images: {how}")
        if name == "std" and (a <= 0).any():
            raise OptionError(f"normalize std={v!r} is not allowed: every std must be > 0")
        out.append(np.broadcast_to(a, (channels,)).astype(np.float32))
    return out[0], out[1]


def _numbers(v: object) -> bool:
    try:
        a = np.asarray(v, dtype=np.float64)
    except (TypeError, ValueError):
        return False
    return a.ndim <= 1 and a.size > 0


# ------------------------------------------------------------------------- reading rows
def _is_h5py(a: object) -> bool:
    return type(a).__module__.startswith("h5py")


class RowReader:
    """Reads rows of an array-like by index arrays. HDF5 datasets are reopened by file name in
    any other process (their handles neither pickle, for spawned workers, nor should be shared
    with forked ones), read-only."""

    def __init__(self, array: Any) -> None:
        self.shape = tuple(array.shape)
        self.dtype = np.dtype(array.dtype)
        self._indices = None
        if isinstance(array, Rows):
            self._indices = array.indices
            array = array.base
        self._h5 = (array.file.filename, array.name) if _is_h5py(array) else None
        self._array = array
        self._pid = os.getpid()
        self._fast = False  # whether _array is already read through dlsets.fastread
        # rows per chunk of a compressed dataset: epochs are then chunk-aware (chunkorder)
        self.chunk_rows = self.chunk_starts = None
        if self._indices is None:
            from ..data.chunkorder import rows_per_chunk

            self.chunk_rows = (rows_per_chunk(array) if self._h5 is not None
                               else getattr(array, "chunk_rows", None))
            # units of other lengths (a shard folder: each shard's chunks), when given
            self.chunk_starts = None if self._h5 is not None else getattr(array, "chunk_starts",
                                                                          None)

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        if self._h5 is not None:
            state["_array"], state["_fast"] = None, False
        return state

    def _base(self):
        if self._h5 is not None and (self._array is None or self._pid != os.getpid()):
            import h5py

            from ..formats.h5 import check_filters

            filename, name = self._h5
            self._array = h5py.File(filename, "r")[name]
            check_filters(self._array, filename)  # a spawned worker registers lz4 here
            self._pid = os.getpid()
            self._fast = False
        if self._h5 is not None and not self._fast:
            from ..data.fastread import rows_of

            self._array = rows_of(self._array)  # a map of plainly stored bytes: RAM speed
            self._fast = True
        return self._array

    def __len__(self) -> int:
        return self.shape[0]

    def rows(self, idx: np.ndarray) -> np.ndarray:
        """``array[idx]`` as a NumPy array, rows in the order of ``idx`` (repeats allowed)."""
        if self._indices is not None:
            idx = self._indices[idx]
        return read_rows(self._base(), idx)


def _one_value(labels) -> bool:
    y = np.asarray(labels[:] if not isinstance(labels, np.ndarray) else labels)
    return y.size > 0 and bool((y == y.flat[0]).all())


# ------------------------------------------------------------------------- making batches
class Feed:
    """Images, labels and masks, an augmenter and the output conversion: :meth:`take` makes
    the batch of given rows and sample ids. Everything is checked here, before any worker
    starts; see :func:`batches` for the arguments."""

    def __init__(self, images, labels=None, *, masks=None, augmenter=None, dtype=None,
                 channels=None, normalize=None, seed: int = 0) -> None:
        if isinstance(images, Split):
            if labels is not None or masks is not None:
                raise OptionError("give a Split alone, or images and labels (and masks), not "
                                  "a Split and labels")
            images, labels, masks = images.images, images.labels, images.masks
            if masks is not None and labels is not None and _one_value(labels):
                # a segmentation set (a folder of images and masks): its labels say nothing,
                # its masks are the targets, so every adapter yields (images, masks)
                labels = None
        self.images = RowReader(_check_array("images", images))
        shape = self.images.shape
        if len(shape) not in (3, 4) or 0 in shape[1:]:
            raise OptionError(f"images have shape {shape}: expected (N, H, W) or (N, H, W, C), "
                              "channels-last, as dlsets.load returns them")
        if (len(shape) == 4 and shape[1] in CHANNEL_COUNTS
                and shape[3] not in CHANNEL_COUNTS):
            raise OptionError(f"images have shape {shape}, which looks channels-first: give "
                              "channels-last images (load without channels=, or "
                              "x.transpose(0, 2, 3, 1)); channels='first' chooses the layout of "
                              "the batches that come out")
        if self.images.dtype not in IMAGE_DTYPES:
            allowed = ", ".join(np.dtype(d).name for d in IMAGE_DTYPES)
            raise OptionError(f"images have dtype {self.images.dtype}: expected one of "
                              f"{allowed}")
        n = shape[0]
        if n == 0:
            raise OptionError("images is empty: there is nothing to feed")
        self.labels = None
        if labels is not None:
            y = np.asarray(labels[:] if not isinstance(labels, np.ndarray) else labels)
            if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
                raise OptionError(f"labels have shape {y.shape} and dtype {y.dtype}: expected "
                                  "integer class labels of shape (N,)")
            if len(y) != n:
                raise OptionError(f"{n} images but {len(y)} labels: give one label per image")
            self.labels = y
        self.masks = None
        if masks is not None:
            m = RowReader(_check_array("masks", masks))
            if len(m.shape) not in (3, 4) or m.shape[:3] != shape[:3]:
                raise OptionError(f"masks have shape {m.shape}, images {shape}: masks must be "
                                  "(N, H, W) or (N, H, W, C) with the images' N, H and W")
            self.masks = m
        if augmenter is not None:
            from ..augment.albu import as_batch_augmenter

            augmenter = as_batch_augmenter(augmenter, params.check_seed(seed))
        self.augmenter = augmenter
        self._home = os.getpid()
        self._local: tuple[int, Any] | None = None
        if isinstance(dtype, np.dtype) or (isinstance(dtype, type) and dtype in (np.uint8,
                                                                                  np.float32)):
            dtype = np.dtype(dtype).name
        if dtype not in DTYPES:
            raise OptionError(f"dtype={dtype!r} is not allowed: give one of {list(DTYPES)} "
                              "(None keeps the stored dtype; float32 is scaled to [0, 1])")
        if channels is not None and channels not in CHANNELS:
            raise OptionError(f"channels={channels!r} is not allowed: give None (the stored "
                              "layout), 'last' (N, H, W, C) or 'first' (N, C, H, W)")
        colours = shape[3] if len(shape) == 4 else 1
        self.normalize = _normalize(normalize, colours)
        if self.normalize is not None and dtype == "uint8":
            raise OptionError("normalize= gives float32 values: leave dtype=None or give "
                              "dtype='float32', not 'uint8'")
        if dtype == "uint8" and self.images.dtype != np.uint8:
            raise OptionError(f"dtype='uint8' is not allowed for {self.images.dtype} images: "
                              "give None or 'float32'")
        self.dtype = "float32" if self.normalize is not None else dtype
        self.channels = channels

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def image_shape(self) -> tuple[int, ...]:
        """Shape of one output image, e.g. (1, 28, 28) for MNIST with channels='first'."""
        shape = self.images.shape[1:]
        if self.channels is None:
            return shape
        c = shape[2] if len(shape) == 3 else 1
        return (c, *shape[:2]) if self.channels == "first" else (*shape[:2], c)

    @property
    def out_dtype(self) -> np.dtype:
        return np.dtype(np.float32) if self.dtype == "float32" else self.images.dtype

    def check_indices(self, indices) -> np.ndarray:
        if isinstance(indices, slice):
            indices = range(len(self))[indices]
        idx = _as_indices(indices)
        if idx.size and (int(idx.min()) < 0 or int(idx.max()) >= len(self)):
            raise IndexError(f"sample indices {int(idx.min())}..{int(idx.max())} out of range "
                             f"for {len(self)} samples")
        return idx

    def take(self, idx: np.ndarray, ids: np.ndarray | None, alloc=None) -> tuple:
        """The batch of rows ``idx`` augmented as samples ``ids``: a tuple of NumPy arrays,
        (images, labels), (images, labels, masks), (images, masks) or (images,).
        ``alloc(shape, dtype)`` makes the output image array (default np.empty)."""
        x = self.images.rows(idx)
        m = None if self.masks is None else self.masks.rows(idx)
        if self.augmenter is not None and ids is not None:
            aug = self._augmenter_here()
            if m is None:
                x = aug(x, ids=ids, channels="last")
            else:
                x, m = aug(x, m, ids=ids, channels="last")
        out = [self._convert(x, alloc or np.empty)]
        if self.labels is not None:
            out.append(self.labels[idx])
        if m is not None:
            if self.channels == "first" and m.ndim == 4:
                m = np.ascontiguousarray(m.transpose(0, 3, 1, 2))
            out.append(m)
        return tuple(out)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_local": None}

    def _augmenter_here(self):
        """The augmenter for this process. In another process (a DataLoader or PyDataset
        worker: the workers are the parallelism) it runs on one thread of its own, and the
        process keeps freed memory for its next batches (:mod:`dlsets.feed.workermem`). (OpenCV's
        thread count is left alone: cv2.setNumThreads in a forked child of a process that had
        used OpenCV's threads hangs.)"""
        if os.getpid() == self._home:
            return self.augmenter
        if self._local is None or self._local[0] != os.getpid():
            import copy

            from ..augment.transforms import Augmenter
            from .workermem import keep_freed_memory

            keep_freed_memory()

            local = copy.copy(self.augmenter)
            if isinstance(local, Augmenter):
                local.workers = 1
            self._local = (os.getpid(), local)
        return self._local[1]

    def _convert(self, x: np.ndarray, alloc) -> np.ndarray:
        n = len(x)
        shape = (n, *self.image_shape)
        out = alloc(shape, self.out_dtype)
        # an NHWC (or NHW) view of the output, whatever its layout, to write into
        if self.channels == "first":
            view = out.transpose(0, 2, 3, 1) if x.ndim == 4 else out.reshape(x.shape)
        else:
            view = out.reshape(x.shape)
        if self.dtype != "float32":
            np.copyto(view, x)
            return out
        scale = (1.0 / np.iinfo(x.dtype).max) if np.issubdtype(x.dtype, np.integer) else 1.0
        if self.normalize is None:
            np.multiply(x, np.float32(scale), out=view, casting="unsafe")
            return out
        mean, std = self.normalize
        factor = (np.float32(scale) / std)
        offset = -mean / std
        if x.ndim == 3:
            factor, offset = factor[0], offset[0]
        np.multiply(x, factor, out=view, casting="unsafe")
        view += offset
        return out


def _check_array(name: str, a: object) -> Any:
    if isinstance(a, (list, tuple)) or not hasattr(a, "shape") or not hasattr(a, "__getitem__"):
        a = np.asarray(a)
    if not hasattr(a, "dtype") or not hasattr(a, "__len__"):
        raise OptionError(f"{name} must be an array-like with shape, dtype, len and row "
                          f"indexing (NumPy, h5py, ...), not {type(a).__name__}")
    from ..common.tensors import framework, to_numpy

    if framework(a) is not None:
        a = to_numpy(a)[0]
    return a


def _as_indices(indices) -> np.ndarray:
    from ..common.tensors import framework, to_numpy

    if framework(indices) is not None:
        indices = to_numpy(indices)[0]
    idx = np.asarray(indices)
    if idx.ndim == 0:
        idx = idx[None]
    if idx.ndim != 1 or (idx.size and not np.issubdtype(idx.dtype, np.integer)):
        raise IndexError(f"sample indices must be integers, got shape {idx.shape} dtype "
                         f"{idx.dtype}")
    return idx.astype(np.int64, copy=False)


# ------------------------------------------------------------------------- the epoch plan
def epoch_order(n: int, epoch: int, *, seed: int = 0, shuffle: bool = True) -> np.ndarray:
    """The order of ``range(n)`` in epoch ``epoch``: sorted by Philox keys of (seed, epoch),
    stable across NumPy versions and machines (or ``range(n)`` without shuffling)."""
    if not shuffle:
        return np.arange(n, dtype=np.int64)
    keys = params.generator(seed, _ORDER_STREAM, epoch * n, 1).bit_generator.random_raw(n)
    return np.argsort(keys, kind="stable").astype(np.int64)


def shard(order: np.ndarray, rank: int, world_size: int, *, pad: bool = False) -> np.ndarray:
    """Rank ``rank``'s share of an epoch's ``order``: positions rank, rank + world_size, ...
    of the order cut to a multiple of ``world_size`` (or padded with its first samples)."""
    if world_size == 1:
        return order
    n = len(order)
    if pad:
        total = -(-n // world_size) * world_size
        order = np.resize(order, total)  # repeats from the start
    else:
        order = order[: n - n % world_size]
    return order[rank::world_size]


class Batches:
    """Augmented batches of one epoch per pass; made by :func:`batches` (which documents the
    arguments). ``len()`` is the number of batches per epoch (of this rank); :meth:`batch`
    makes any batch of any epoch (a pure function of its arguments); iterating yields the
    batches of epoch ``epoch`` and then moves ``epoch`` on by one, so each pass is a new
    epoch; :meth:`set_epoch` chooses the next pass's epoch (as ``DistributedSampler``)."""

    def __init__(self, images, labels=None, batch_size: int = 32, *, masks=None,
                 shuffle: bool = True, seed: int = 0, epoch: int = 0, drop_last: bool = False,
                 augmenter=None, rank: int = 0, world_size: int = 1, pad: bool = False,
                 dtype: str | None = None, channels: str | None = None,
                 normalize=None) -> None:
        self.feed = Feed(images, labels, masks=masks, augmenter=augmenter, dtype=dtype,
                         channels=channels, normalize=normalize, seed=seed)
        self.batch_size = _integer("batch_size", batch_size, 1)
        self.seed = params.check_seed(seed)
        self.epoch = check_epoch(epoch, len(self.feed))
        for name, flag in (("shuffle", shuffle), ("drop_last", drop_last), ("pad", pad)):
            if not isinstance(flag, (bool, np.bool_)):
                raise OptionError(f"{name}={flag!r} is not allowed: give True or False")
        self.shuffle, self.drop_last, self.pad = bool(shuffle), bool(drop_last), bool(pad)
        self._plan: tuple[int, np.ndarray, np.ndarray] | None = None
        self._lock = threading.Lock()
        self.set_rank(rank, world_size)

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        del state["_lock"]
        state["_plan"] = None  # recomputed where needed: no need to ship it
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def set_rank(self, rank: int, world_size: int) -> None:
        """Feed rank ``rank`` of ``world_size`` (checked: every rank must get batches)."""
        rank, world_size = check_rank(rank, world_size)
        n = len(self.feed)
        share = -(-n // world_size) if self.pad else n // world_size
        if share == 0:
            raise OptionError(f"{n} samples cannot be shared by {world_size} ranks: give "
                              "pad=True (repeating samples) or use fewer ranks")
        if share * world_size > n * FETCHES:
            raise OptionError(f"pad=True with {world_size:,} ranks fetches each of the {n} "
                              f"samples more than {FETCHES:,} times per epoch: use fewer ranks")
        batches = share // self.batch_size if self.drop_last else -(-share // self.batch_size)
        if batches == 0:
            raise OptionError(f"drop_last=True with batch_size={self.batch_size} leaves no "
                              f"batch of the {share} samples per rank: give batch_size <= "
                              f"{share} or drop_last=False")
        self.rank, self.world_size = rank, world_size
        self._share, self._batches = share, batches
        self._plan = None

    @property
    def n(self) -> int:
        """Samples in the dataset (all ranks)."""
        return len(self.feed)

    @property
    def chunked(self) -> bool:
        """Whether epochs take the chunk-aware order (a shuffled compressed dataset)."""
        return bool(self.shuffle and self.feed.images.chunk_rows)

    def __len__(self) -> int:
        return self._batches

    def __repr__(self) -> str:
        return (f"Batches({self.n} samples, batch_size={self.batch_size}, {len(self)} batches "
                f"per epoch, epoch={self.epoch}, rank {self.rank} of {self.world_size})")

    def set_epoch(self, epoch: int) -> None:
        """Make the next pass epoch ``epoch`` (0 to :func:`dlsets.feed.ids.max_epoch` of ``n``)."""
        self.epoch = check_epoch(epoch, self.n)

    def next_epoch(self) -> int:
        """The epoch of a new pass, moving ``epoch`` on by one."""
        with self._lock:
            e = self.epoch
            self.epoch = e + 1
        return e

    def indices(self, epoch: int | None = None) -> np.ndarray:
        """This rank's dataset rows of epoch ``epoch`` (default: the next pass's), in order."""
        return self._plan_of(epoch)[1]

    def _plan_of(self, epoch: int | None) -> tuple[int, np.ndarray, np.ndarray]:
        """(epoch, this rank's rows, how many times each was fetched before in the epoch)."""
        e = self.epoch if epoch is None else check_epoch(epoch, self.n)
        plan = self._plan
        if plan is None or plan[0] != e:
            if self.chunked:  # compressed chunks: whole chunks in a shuffle buffer
                from ..data import chunkorder

                order = chunkorder.epoch_order(self.n, self.feed.images.chunk_rows, e,
                                               seed=self.seed,
                                               starts=self.feed.images.chunk_starts)
            else:
                order = epoch_order(self.n, e, seed=self.seed, shuffle=self.shuffle)
            rows = shard(order, self.rank, self.world_size, pad=self.pad)
            # position p of the (padded) order is the (p // n)-th fetch of its row
            fetch = np.arange(self.rank, len(rows) * self.world_size, self.world_size) // self.n
            plan = self._plan = (e, rows, fetch)
        return plan

    def batch_indices(self, i: int, epoch: int | None = None) -> np.ndarray:
        """The dataset rows of batch ``i`` of epoch ``epoch``."""
        return self._batch_plan(i, epoch)[1]

    def _batch_plan(self, i: int, epoch: int | None) -> tuple[int, np.ndarray, np.ndarray]:
        i = index("batch", i)
        if i >= len(self):
            raise IndexError(f"batch {i} of {len(self)}")
        e, rows, fetch = self._plan_of(epoch)
        at = slice(i * self.batch_size, (i + 1) * self.batch_size)
        return e, rows[at], fetch[at]

    def batch(self, i: int, epoch: int | None = None, alloc=None) -> tuple:
        """Batch ``i`` of epoch ``epoch`` (default: the next pass's): a tuple of NumPy arrays,
        see :func:`batches`."""
        e, idx, fetch = self._batch_plan(i, epoch)
        return self.feed.take(idx, fetch_ids(e, idx, fetch, self.n), alloc)

    def __iter__(self):
        e = self.next_epoch()
        for i in range(len(self)):
            yield _unwrap(self.batch(i, e))


def _unwrap(batch: tuple):
    return batch[0] if len(batch) == 1 else batch


def batches(images, labels=None, batch_size: int = 32, *, masks=None, shuffle: bool = True,
            seed: int = 0, epoch: int = 0, drop_last: bool = False, augmenter=None,
            rank: int = 0, world_size: int = 1, pad: bool = False, dtype: str | None = None,
            channels: str | None = None, normalize=None) -> Batches:
    """Augmented batches of ``images`` (and ``labels``, ``masks``) for any training loop.

    ``images`` is (N, H, W) or (N, H, W, C), channels-last, as :func:`dlsets.load` gives them
    (NumPy, a memory map, an h5py dataset or any array-like with row indexing), or a loaded
    :class:`~dlsets.Split` (its labels and masks come along). Each batch is a tuple of NumPy
    arrays ``(images, labels)``, ``(images, labels, masks)`` with masks, ``(images, masks)``
    with masks but no labels, or images alone; images (B, H, W[, C]) per ``channels``, labels
    as stored, masks with the same geometry as their images.

    ``shuffle`` orders each epoch by ``seed`` (see the module docstring for the rule); ``epoch``
    is the first pass's epoch (each pass moves it on; ``set_epoch`` sets it). ``augmenter``
    (a dlsets Augmenter, or an albumentations pipeline seeded from ``seed``) augments whole
    batches, sample ``j`` of epoch ``e`` as id ``e * N + j`` (padding's repeats: see
    :mod:`dlsets.feed.ids`). ``rank`` of ``world_size`` gets a disjoint, equal-sized share of every
    epoch (``pad=True``: padded with repeats instead of
    leaving the last ``N % world_size`` out). ``dtype`` None keeps the stored dtype, "float32"
    scales integers to [0, 1]; ``channels`` None keeps the layout, "last" gives (B, H, W, C),
    "first" (B, C, H, W); ``normalize=(mean, std)`` (in [0, 1] units; e.g. ``ds.stats`` or a
    built-in dataset's name such as "cifar10") gives float32 ``(x - mean) / std``, applied
    after augmentation. Bad arguments raise OptionError here, before any batch is made.
    """
    return Batches(images, labels, batch_size, masks=masks, shuffle=shuffle, seed=seed,
                   epoch=epoch, drop_last=drop_last, augmenter=augmenter, rank=rank,
                   world_size=world_size, pad=pad, dtype=dtype, channels=channels,
                   normalize=normalize)
