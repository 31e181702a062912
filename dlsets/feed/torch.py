"""PyTorch datasets of augmented batches (``pip install 'dlsets[torch]'``).

:class:`AugmentedDataset` is map-style, for a plain ``DataLoader(ds, batch_size=B,
shuffle=True, num_workers=k)``: the DataLoader hands it whole batches of indices
(``__getitems__``), which are augmented in one call of the batched engine and passed through
the default collate as they are. :class:`AugmentedIterableDataset` makes the batches itself,
for ``DataLoader(ds, batch_size=None, num_workers=k)``, split across workers and ranks.

Both follow the id rule of :mod:`dlsets.feed.ids` (the first fetch of sample ``j`` in epoch ``e`` is
augmented as id ``e * len(dataset) + j``, further fetches in the epoch take ids of their own)
and keep the epoch in shared memory, so ``set_epoch`` reaches workers that already run
(``persistent_workers=True``) and spawned ones.
"""

from __future__ import annotations

try:
    import torch
    from torch.utils.data import Dataset, IterableDataset, get_worker_info
    from torch.utils.data._utils.collate import default_collate_fn_map
except ImportError as exc:  # pragma: no cover - exercised in a subprocess without torch
    raise ImportError("dlsets.torch needs PyTorch: pip install 'dlsets[torch]' (or a build for "
                      "your platform from pytorch.org)") from exc

import multiprocessing
import os
import re

import numpy as np

from ..errors import DlsetsError, OptionError, ReplayError
from .batching import MAX_WORLD_SIZE, Batches, Feed, check_rank
from .ids import check_epoch, fetch_ids, max_epoch

MAX_WORKERS = 1024  # DataLoader workers per dataset whose epochs are tracked
# Batches up to this size leave a worker as NumPy bytes in the pickle: every shared-memory
# tensor costs a file-descriptor handshake (about 2 ms here), more than piping 2 MB does (a
# CIFAR-10 uint8 batch of 256 is 786 KB: inline, it went from 0.45x to 0.6x of the bare rate).
INLINE_BYTES = 1 << 21

__all__ = ["AugmentedDataset", "AugmentedIterableDataset", "distributed_rank"]


class _Batch(tuple):
    """A batch made whole by ``__getitems__`` (NumPy arrays); the default collate turns it
    into tensors and nothing else."""


class _Wire:
    """A batch on its way out of a worker process: arrays up to INLINE_BYTES as NumPy bytes in
    the pickle, bigger ones as shared-memory tensors; all tensors again when unpickled in the
    main process."""

    __slots__ = ("arrays", "kind")

    def __init__(self, arrays: tuple, kind: type) -> None:
        self.arrays, self.kind = arrays, kind

    def __reduce__(self):
        return _from_wire, (self.arrays, self.kind)


def _from_wire(arrays: tuple, kind: type):
    return kind(a if isinstance(a, torch.Tensor) else torch.from_numpy(a) for a in arrays)


def _deliver(arrays: tuple, kind: type = tuple):
    """Tensors (``kind`` of them), or in a worker a :class:`_Wire` that becomes them."""
    if get_worker_info() is None:
        return kind(torch.from_numpy(a) for a in arrays)
    return _Wire(tuple(a if a.nbytes <= INLINE_BYTES else torch.from_numpy(a) for a in arrays),
                 kind)


def _pass_through(batch, *, collate_fn_map=None):
    return _deliver(tuple(batch[0]))


# Extending default_collate_fn_map in place is the documented way to teach default_collate a
# type; only batches of this private type are affected.
default_collate_fn_map[_Batch] = _pass_through


def _typed(arrays: tuple, feed: Feed) -> tuple:
    """Batch arrays in the dtypes torch wants: labels int64, integer masks int64 (what the
    cross-entropy losses take)."""
    out = [arrays[0]]
    rest = list(arrays[1:])
    if feed.labels is not None:
        out.append(rest.pop(0).astype(np.int64, copy=False))
    if rest:
        m = rest.pop(0)
        if np.issubdtype(m.dtype, np.integer):
            m = m.astype(np.int64, copy=False)
        out.append(np.ascontiguousarray(m))
    return tuple(out)


def _tensors(arrays: tuple, feed: Feed) -> tuple:
    return tuple(torch.from_numpy(a) for a in _typed(arrays, feed))


def distributed_rank(rank: int | None = None, world_size: int | None = None) -> tuple[int, int]:
    """``(rank, world_size)``: the ones given, else torch.distributed's when it is initialised,
    else the ``RANK`` and ``WORLD_SIZE`` variables torchrun sets (both, integers in range, or
    OptionError), else (0, 1)."""
    if rank is not None or world_size is not None:
        return check_rank(0 if rank is None else rank, 1 if world_size is None else world_size)
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    rank, world_size = os.environ.get("RANK"), os.environ.get("WORLD_SIZE")
    if rank is None and world_size is None:
        return 0, 1
    how = "set both as torchrun does, or pass rank= and world_size="
    if rank is None or world_size is None:
        given, missing = ("RANK", "WORLD_SIZE") if world_size is None else ("WORLD_SIZE", "RANK")
        raise OptionError(f"{given}={os.environ[given]!r} is set in the environment but "
                          f"{missing} is not: {how}")
    size = _env_int("WORLD_SIZE", world_size, 1, MAX_WORLD_SIZE, how)
    return _env_int("RANK", rank, 0, size - 1, how), size


def _env_int(name: str, value: str, low: int, high: int, how: str) -> int:
    # ASCII digits only: int() would also take "٣", "1_0" and " 1 "
    if not re.fullmatch(r"[0-9]{1,10}", value) or not low <= int(value) <= high:
        raise OptionError(f"{name}={value!r} in the environment is not allowed: it must be an "
                          f"integer from {low} to {high:,}; {how}")
    return int(value)


def _shared(size: int) -> torch.Tensor:
    # shared memory: forked workers see the same pages, spawned ones get them with the dataset
    return torch.zeros(size, dtype=torch.int64).share_memory_()


def _lock():
    """A lock that forked and spawned workers share (a fork-context lock cannot be sent to a
    spawned process)."""
    return multiprocessing.get_context("spawn").Lock()


_EPOCH, _EXPLICIT, _COUNTS = 0, 1, 2  # the layout of AugmentedDataset's shared state
# The lock is held for microseconds; a wait this long means its holder died holding it (a
# worker killed while counting), and waiting on would hang the loop.
LOCK_TIMEOUT = 10.0


class _Counting:
    """``with _Counting(lock):`` holds the fetch-count lock, or raises after LOCK_TIMEOUT."""

    def __init__(self, lock) -> None:
        self.lock = lock

    def __enter__(self) -> None:
        if not self.lock.acquire(timeout=LOCK_TIMEOUT):
            raise DlsetsError(f"the fetch counts of an AugmentedDataset stayed locked for "
                              f"{LOCK_TIMEOUT:g} s: a worker process died while counting. Make "
                              "the dataset and its DataLoader anew")

    def __exit__(self, *exc) -> None:
        self.lock.release()


class AugmentedDataset(Dataset):
    """A map-style dataset of augmented samples, made a batch at a time.

    ``images``, ``labels``, ``masks``: as for :func:`dlsets.batches` (arrays of any kind, or a
    :class:`~dlsets.Split`). ``augmenter``: a dlsets Augmenter (or an albumentations pipeline,
    seeded from ``seed``), or None. Batches come out as tensors ``(images, labels)`` (with
    masks: ``(images, labels, masks)``): images ``dtype`` "float32" in [0, 1] by default (or
    "uint8", or None for the stored dtype), ``channels="first"`` (B, C, H, W) by default,
    ``normalize=(mean, std)`` as in :func:`dlsets.batches`; labels and integer masks int64.

    Epochs: after ``set_epoch(e)``, the first fetch of sample j is augmented as id
    ``e * len(self) + j`` and every further fetch in that epoch (a sampler that draws with
    replacement) as an id of its own (:mod:`dlsets.feed.ids`). Without any ``set_epoch`` call, the
    k-th fetch of sample j since construction is taken as epoch ``epoch + k``, id
    ``(epoch + k) * len(self) + j``, so plain loops get new transforms every epoch with no
    call at all. With a sampler that draws with replacement, call ``set_epoch`` before every
    epoch, the first included. The counts live in shared memory and change under a lock
    shared by the worker processes (fork or spawn, persistent or not), so no two fetches get
    one id.

    ``__getitems__`` returns a one-element list that DataLoader's default collate turns into
    the batch tuple; a custom ``collate_fn`` receives that list (``batch[0]`` is a tuple of
    NumPy arrays).
    ``ds[i]`` gives one sample, ``ds[[i, j, ...]]`` a batch tuple.
    """

    def __init__(self, images, labels=None, augmenter=None, *, masks=None, dtype="float32",
                 channels: str | None = "first", normalize=None, epoch: int = 0,
                 seed: int = 0) -> None:
        self._feed = Feed(images, labels, masks=masks, augmenter=augmenter, dtype=dtype,
                          channels=channels, normalize=normalize, seed=seed)
        n = len(self._feed)
        # the epoch set last, whether set_epoch set it, then the fetches of each sample since
        self._state = _shared(_COUNTS + n)
        self._lock = _lock()
        self._state[_EPOCH] = check_epoch(epoch, n)

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        if multiprocessing.context.get_spawning_popen() is None:
            state["_lock"] = None  # a copy (pickle, deepcopy), not a worker: a lock of its own
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        if self._lock is None:
            self._lock = _lock()
        if not self._state.is_shared():  # a plain pickle copies the counts out of shared memory
            self._state.share_memory_()

    def __len__(self) -> int:
        return len(self._feed)

    def __repr__(self) -> str:
        return (f"AugmentedDataset({len(self)} samples, epoch={self.epoch}, "
                f"augmenter={self._feed.augmenter!r})")

    @property
    def epoch(self) -> int:
        """The epoch set last (fetches since then count on from it, per sample)."""
        return int(self._state[_EPOCH])

    def set_epoch(self, epoch: int) -> None:
        """Make the next fetches those of epoch ``epoch``, 0 to ``dlsets.ids.max_epoch(len(
        self))`` (call it before iterating the epoch's DataLoader, in the main process)."""
        epoch = check_epoch(epoch, len(self))
        with _Counting(self._lock):
            self._state[_COUNTS:] = 0
            self._state[_EXPLICIT] = 1
            self._state[_EPOCH] = epoch

    def ids(self, indices) -> np.ndarray:
        """The sample ids the next fetch of ``indices`` gets, counting that fetch."""
        idx = self._feed.check_indices(indices)
        unique = len(np.unique(idx)) == len(idx)
        if not unique:  # a sample twice in one batch: its second copy is its next fetch
            order = np.argsort(idx, kind="stable")
            ordered = idx[order]
            pos = np.arange(len(idx))
            first = np.r_[True, ordered[1:] != ordered[:-1]]
            rank = np.empty(len(idx), np.int64)
            rank[order] = pos - np.maximum.accumulate(np.where(first, pos, 0))
        state = self._state.numpy()
        visits = state[_COUNTS:]
        with _Counting(self._lock):  # read and count as one step: no two fetches get one id
            epoch, explicit = int(state[_EPOCH]), bool(state[_EXPLICIT])
            k = visits[idx] if unique else visits[idx] + rank
            if unique:
                visits[idx] += 1
            else:
                np.add.at(visits, idx, 1)
        n = len(self)
        if explicit:
            return fetch_ids(epoch, idx, k, n)
        last = epoch + (int(k.max()) if k.size else 0)
        if last > max_epoch(n):
            raise ReplayError(f"a sample is fetched {last - epoch + 1:,} times since the dataset "
                              f"was made at epoch {epoch}, without set_epoch: the last fetch "
                              f"would be epoch {last:,}, past the last of {max_epoch(n):,} for "
                              f"{n:,} samples. Call set_epoch(epoch) before each epoch")
        return (epoch + k) * np.int64(n) + idx

    def __getitems__(self, indices) -> list:
        idx = self._feed.check_indices(indices)
        arrays = self._feed.take(idx, self.ids(idx))
        return [_Batch(_typed(arrays, self._feed))]

    def __getitem__(self, index):
        idx = self._feed.check_indices(index)
        batch = _tensors(self._feed.take(idx, self.ids(idx)), self._feed)
        if np.ndim(index) == 0 and not isinstance(index, slice):
            return tuple(t[0] for t in batch) if len(batch) > 1 else batch[0][0]
        return batch if len(batch) > 1 else batch[0]


class AugmentedIterableDataset(IterableDataset):
    """Augmented batches for ``DataLoader(ds, batch_size=None, num_workers=k)``: the dataset
    makes the batches (of :func:`dlsets.batches`), worker w of k taking batches w, w + k, ...,
    so the DataLoader delivers them in the order one process would. From a compressed dataset
    (read in the chunk-aware order) worker w takes the w-th k-th of the epoch's batches in one
    run instead, so each worker decodes only its own chunks: the same batches, delivered
    interleaved (first of each worker's run, then the second of each, ...).

    Arguments as :func:`dlsets.batches` (``batch_size``, ``shuffle``, ``seed``, ``drop_last``,
    ``pad``, ``normalize``), with torch's defaults ``dtype="float32"``, ``channels="first"``;
    batches are tensor tuples as for :class:`AugmentedDataset`. ``rank``/``world_size``
    default to :func:`distributed_rank` (torch.distributed, else torchrun's variables), read
    when the dataset is made and again at ``set_epoch`` and at iteration in the main process;
    every rank gets an equal share of each epoch, so DDP ranks run the same number of steps.

    Each pass of a worker is the next epoch (counted in shared memory, so it holds with
    persistent and non-persistent workers); ``set_epoch(e)`` makes the next pass epoch e.
    ``len()`` is the number of batches per epoch of this rank.
    """

    def __init__(self, images, labels=None, augmenter=None, *, batch_size: int = 32,
                 masks=None, shuffle: bool = True, seed: int = 0, epoch: int = 0,
                 drop_last: bool = False, rank: int | None = None,
                 world_size: int | None = None, pad: bool = False, dtype="float32",
                 channels: str | None = "first", normalize=None) -> None:
        self._explicit = (rank, world_size) if (rank, world_size) != (None, None) else None
        rank, world_size = distributed_rank(rank, world_size)
        self._batches = Batches(images, labels, batch_size, masks=masks, shuffle=shuffle,
                                seed=seed, epoch=epoch, drop_last=drop_last,
                                augmenter=augmenter, rank=rank, world_size=world_size, pad=pad,
                                dtype=dtype, channels=channels, normalize=normalize)
        # [0]: the epoch set last; [1 + w]: passes of worker w since then
        self._state = _shared(MAX_WORKERS + 1)
        self._state[0] = self._batches.epoch

    @property
    def batches(self) -> Batches:
        """The batch stream behind this dataset (its plan: ``indices(epoch)``, ...)."""
        return self._batches

    @property
    def rank(self) -> int:
        return self._batches.rank

    @property
    def world_size(self) -> int:
        return self._batches.world_size

    def __len__(self) -> int:
        return len(self._batches)

    def __repr__(self) -> str:
        return (f"AugmentedIterableDataset({self._batches.n} samples, {len(self)} batches per "
                f"epoch, rank {self.rank} of {self.world_size})")

    def _refresh_rank(self) -> None:
        if self._explicit is None:
            rank, world_size = distributed_rank()
            if (rank, world_size) != (self.rank, self.world_size):
                self._batches.set_rank(rank, world_size)

    def set_epoch(self, epoch: int) -> None:
        """Make the next pass of every worker epoch ``epoch``."""
        epoch = check_epoch(epoch, self._batches.n)
        self._refresh_rank()
        self._state[1:] = 0
        self._state[0] = epoch
        self._batches.set_epoch(epoch)

    def __iter__(self):
        info = get_worker_info()
        worker, workers = (0, 1) if info is None else (info.id, info.num_workers)
        if workers > MAX_WORKERS:
            raise OptionError(f"num_workers={workers} is more than the {MAX_WORKERS} workers "
                              "AugmentedIterableDataset keeps epochs for")
        if info is None:
            self._refresh_rank()
        state = self._state.numpy()
        epoch = int(state[0] + state[1 + worker])
        state[1 + worker] += 1
        batches = self._batches
        n = len(batches)
        if workers > 1 and batches.chunked:
            # whole windows of chunks per worker: each decodes its own (round robin, every
            # worker would need every chunk of every window)
            mine = range(worker * n // workers, (worker + 1) * n // workers)
        else:
            mine = range(worker, n, workers)
        for i in mine:
            # a list, as DataLoader's default_convert makes of tuples
            yield _deliver(_typed(batches.batch(i, epoch), batches.feed), list)
