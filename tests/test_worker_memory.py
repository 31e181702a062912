"""DataLoader workers keep freed memory for their next batches (dlsets.feed.workermem) instead of
mapping every batch's pages anew."""

import ctypes
import os

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from dlsets import Augmenter
from dlsets.feed.torch import AugmentedDataset, _Batch


def _minor_faults() -> int:
    with open(f"/proc/{os.getpid()}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[7])


class _Faults(AugmentedDataset):
    """Batches carry the worker's page-fault count when they were made."""

    def __getitems__(self, indices):
        (batch,) = super().__getitems__(indices)
        return [_Batch((*batch, np.array([_minor_faults()])))]


@pytest.mark.skipif(not os.path.exists("/proc/self/stat")
                    or not hasattr(ctypes.CDLL(None), "mallopt"), reason="Linux with glibc")
def test_workers_reuse_the_memory_of_sent_batches():
    x = np.random.default_rng(0).integers(0, 256, (256 * 32, 28, 28), dtype=np.uint8)
    ds = _Faults(x, np.zeros(len(x), np.int64), Augmenter(rotate=10), dtype="float32")
    loader = DataLoader(ds, batch_size=256, num_workers=1,
                        generator=torch.Generator().manual_seed(0))
    faults = [int(b[-1][0]) for b in loader]
    assert len(faults) == 32
    # each float32 batch and its pickle are 800 KB (200 pages each): mapped anew, they fault
    # some 370 times per batch; reused, only pages still shared with the parent fault, once
    # (the median of the last 16 batches: a batch that met a page reclaim on a busy machine
    # faults more, and one such outlier must not decide)
    per_batch = float(np.median(np.diff(faults[15:])))
    assert per_batch < 100, f"{per_batch:.0f} page faults per batch: {np.diff(faults[15:])}"
