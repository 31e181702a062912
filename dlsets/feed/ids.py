"""The id rule: which sample of the augmenter's stream each fetch of a dataset row uses.

Ids live below ``2**48`` (:data:`dlsets.common.tensors.MAX_ID`), split in two halves so that no
fetch
can take another's id, whatever the sampler:

- the **first fetch** of row ``j`` (of ``n``) in epoch ``e`` is id ``e * n + j``, below
  ``2**47 / FETCHES``;
- the ``k``-th **further fetch** in the same epoch (``k = 1 .. FETCHES - 1``: a sampler that
  draws with replacement, or padding that repeats rows for equal shares) is id
  ``2**47 + (e * FETCHES + k - 1) * n + j``, in the upper half, a block of ``FETCHES * n`` ids
  per epoch.

So epochs run from 0 to :func:`max_epoch` ``= 2**33 // n - 1`` (143,164 for 60,000 samples).
"""

from __future__ import annotations

import operator

import numpy as np

from ..common.tensors import MAX_ID
from ..errors import OptionError, ReplayError

REPEATS = MAX_ID >> 1  # the first id of further fetches
FETCHES = 1 << 14  # fetches of one row per epoch that get ids of their own (first included)


def max_epoch(n: int) -> int:
    """The largest epoch whose every fetch of ``n`` rows has an id of its own."""
    return REPEATS // (FETCHES * n) - 1


def check_epoch(epoch: object, n: int, name: str = "epoch") -> int:
    """``epoch`` as an int in 0..max_epoch(n), or OptionError naming the value and range."""
    top = max_epoch(n)
    try:  # ints of any kind, 0-d integer arrays and tensors too; never bools or floats
        e = None if isinstance(epoch, (bool, np.bool_)) else operator.index(epoch)
    except TypeError:
        e = None
    if e is None or not 0 <= e <= top:
        raise OptionError(f"{name}={epoch!r} is not allowed for {n:,} samples: give an integer "
                          f"from 0 to {top:,} (every fetch of a sample in an epoch gets its own "
                          f"augmenter id below 2**48, {FETCHES:,} per sample and epoch)")
    return e


def sample_ids(epoch: int, indices, n: int) -> np.ndarray:
    """Augmenter sample ids (int64) of the first fetch of rows ``indices`` in epoch ``epoch``
    of ``n`` rows: ``epoch * n + indices``."""
    e = check_epoch(epoch, n)
    return np.int64(e) * np.int64(n) + np.asarray(indices, dtype=np.int64)


def fetch_ids(epoch: int, indices, fetches, n: int) -> np.ndarray:
    """Ids of rows ``indices`` fetched for the ``fetches``-th time (0: the first) in epoch
    ``epoch`` of ``n`` rows; ReplayError past FETCHES fetches of a row in one epoch."""
    e = check_epoch(epoch, n)
    idx = np.asarray(indices, dtype=np.int64)
    k = np.asarray(fetches, dtype=np.int64)
    if k.size and int(k.max()) >= FETCHES:
        j = int(idx[np.argmax(k)]) if idx.ndim else int(idx)
        raise ReplayError(f"sample {j} is fetched {int(k.max()) + 1:,} times in epoch {e}: only "
                          f"{FETCHES:,} fetches of a sample per epoch get transforms of their "
                          "own. Call set_epoch(epoch) before each epoch, or let the sampler "
                          "draw each sample fewer times per epoch")
    first = e * n + idx
    further = REPEATS + (e * FETCHES + k - 1) * n + idx
    return np.where(k == 0, first, further).astype(np.int64, copy=False)
