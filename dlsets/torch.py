"""PyTorch datasets of augmented batches (``pip install 'dlsets[torch]'``).

:class:`AugmentedDataset` is map-style, for a plain ``DataLoader(ds, batch_size=B,
shuffle=True, num_workers=k)``: the DataLoader hands it whole batches of indices
(``__getitems__``), which are augmented in one call of the batched engine and passed through
the default collate as they are. :class:`AugmentedIterableDataset` makes the batches itself,
for ``DataLoader(ds, batch_size=None, num_workers=k)``, split across workers and ranks.

Both follow the id rule of :mod:`dlsets.feed` (sample ``j`` of epoch ``e`` is augmented as id
``e * len(dataset) + j``) and keep the epoch in shared memory, so ``set_epoch`` reaches
workers that already run (``persistent_workers=True``) and spawned ones.
"""

from __future__ import annotations

try:
    import torch
    from torch.utils.data import Dataset, IterableDataset, get_worker_info
    from torch.utils.data._utils.collate import default_collate_fn_map
except ImportError as exc:  # pragma: no cover - exercised in a subprocess without torch
    raise ImportError("dlsets.torch needs PyTorch: pip install 'dlsets[torch]' (or a build for "
                      "your platform from pytorch.org)") from exc

import os

import numpy as np

from .errors import OptionError
from .feed import Batches, Feed, check_rank, sample_ids

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
    else the ``RANK`` and ``WORLD_SIZE`` variables torchrun sets, else (0, 1)."""
    if rank is not None or world_size is not None:
        return check_rank(0 if rank is None else rank, 1 if world_size is None else world_size)
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    env = os.environ.get("RANK"), os.environ.get("WORLD_SIZE")
    if all(v is not None and v.isdigit() for v in env):
        return check_rank(int(env[0]), int(env[1]))
    return 0, 1


def _shared(size: int) -> torch.Tensor:
    # shared memory: forked workers see the same pages, spawned ones get them with the dataset
    return torch.zeros(size, dtype=torch.int64).share_memory_()


class AugmentedDataset(Dataset):
    """A map-style dataset of augmented samples, made a batch at a time.

    ``images``, ``labels``, ``masks``: as for :func:`dlsets.batches` (arrays of any kind, or a
    :class:`~dlsets.Split`). ``augmenter``: a dlsets Augmenter (or an albumentations pipeline,
    seeded from ``seed``), or None. Batches come out as tensors ``(images, labels)`` (with
    masks: ``(images, labels, masks)``): images ``dtype`` "float32" in [0, 1] by default (or
    "uint8", or None for the stored dtype), ``channels="first"`` (B, C, H, W) by default,
    ``normalize=(mean, std)`` as in :func:`dlsets.batches`; labels and integer masks int64.

    Epochs: the k-th time sample j is fetched since ``set_epoch(e)`` (or since construction,
    with e = ``epoch``), it is augmented as epoch e + k, i.e. id ``(e + k) * len(self) + j``.
    Plain loops over a DataLoader therefore get new transforms every epoch with no call at
    all; calling ``set_epoch(epoch)`` before each epoch (as with ``DistributedSampler``) makes
    the epoch explicit, e.g. when resuming. The counts live in shared memory, so this holds
    with worker processes (fork or spawn, persistent or not).

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
        # [0]: the epoch set last; [1 + j]: fetches of sample j since then
        self._state = _shared(n + 1)
        self.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self._feed)

    def __repr__(self) -> str:
        return (f"AugmentedDataset({len(self)} samples, epoch={self.epoch}, "
                f"augmenter={self._feed.augmenter!r})")

    @property
    def epoch(self) -> int:
        """The epoch set last (fetches since then count on from it, per sample)."""
        return int(self._state[0])

    def set_epoch(self, epoch: int) -> None:
        """Augment the next fetch of every sample as epoch ``epoch`` (call it before iterating
        the epoch's DataLoader, in the main process)."""
        from .feed import _integer

        epoch = _integer("epoch", epoch, 0)
        self._state[1:] = 0
        self._state[0] = epoch

    def ids(self, indices) -> np.ndarray:
        """The sample ids the next fetch of ``indices`` gets, counting that fetch."""
        idx = self._feed.check_indices(indices)
        state = self._state.numpy()
        visits = state[1:]
        if len(np.unique(idx)) == len(idx):
            k = visits[idx].copy()
            visits[idx] += 1
        else:  # a sample twice in one batch: its second copy counts as its next fetch
            order = np.argsort(idx, kind="stable")
            ordered = idx[order]
            pos = np.arange(len(idx))
            first = np.r_[True, ordered[1:] != ordered[:-1]]
            rank = np.empty(len(idx), np.int64)
            rank[order] = pos - np.maximum.accumulate(np.where(first, pos, 0))
            k = visits[idx] + rank
            np.add.at(visits, idx, 1)
        return sample_ids(0, idx, len(self)) + (np.int64(state[0]) + k) * np.int64(len(self))

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
    so the DataLoader delivers them in the order one process would.

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
        self.set_epoch(epoch)

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
        from .feed import _integer

        epoch = _integer("epoch", epoch, 0)
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
        for i in range(worker, len(batches), workers):
            # a list, as DataLoader's default_convert makes of tuples
            yield _deliver(_typed(batches.batch(i, epoch), batches.feed), list)
