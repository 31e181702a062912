"""Memory settings for the worker processes that make batches (DataLoader and Keras workers).

A worker allocates a new batch (800 KB for 256 float32 MNIST images) and its pickle for every
batch and frees them once sent. glibc hands such blocks back to the kernel on free and maps
them again for the next batch: about 180 page faults per float32 MNIST batch, a third of a
worker's CPU time. Raising glibc's mmap and trim thresholds in the worker keeps the freed
memory for reuse (bounded by the thresholds); measured in ``tests/bench/bench_feed.py``.
"""

from __future__ import annotations

import ctypes
import os

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters
MMAP_THRESHOLD = 32 << 20  # blocks up to this come from the heap (glibc's largest allowed)
TRIM_THRESHOLD = 64 << 20  # free memory the heap keeps at its top before returning it

_done: set[int] = set()


def keep_freed_memory() -> bool:
    """In this process, let glibc keep freed blocks for reuse (once per process; called in
    worker processes only, never in the user's own). False where malloc is not glibc's."""
    pid = os.getpid()
    if pid in _done:
        return True
    _done.add(pid)
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc (musl, macOS, Windows): nothing to set
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)
                and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
