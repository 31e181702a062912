"""The hashes of a download: sha256 (and md5 when asked) of bytes as they arrive, on worker
threads, and of files on disk; and the size of a partial download.

:mod:`dlsets.sources.download` re-exports these names (their first home).
"""

from __future__ import annotations

import hashlib
import os
import queue
import threading
from pathlib import Path

from ..store.regular import open_regular

CHUNK = 1 << 20
"""Bytes per read and write; big, so the per-chunk Python overhead stays negligible."""
QUEUED = 1
"""Chunks waiting for a hashing thread. Each chunk read is a new bytes object; with few alive
at once malloc reuses the same memory, while a deep queue (16) made it hand memory back and
fault it in again: 12,600 page faults per 200 MB, a fifth of the reading thread's CPU."""


class Hashes:
    """sha256 (and md5 when asked) of a byte stream, updated in one pass."""

    def __init__(self, md5: bool = False):
        self._want_md5 = md5
        # What download_file adds about the transfer that produced these bytes.
        self.url: str | None = None
        self.received = 0  # bytes that came over the network in this call
        self.seconds = 0.0
        self.resumed_from = 0  # bytes of an earlier partial download that were reused
        self.reset()

    def reset(self) -> None:
        """Forget everything hashed so far."""
        self._sha = hashlib.sha256()
        self._md5 = hashlib.md5(usedforsecurity=False) if self._want_md5 else None
        self.size = 0

    def update(self, data) -> None:
        self._sha.update(data)
        if self._md5 is not None:
            self._md5.update(data)
        self.size += len(data)

    @property
    def sha256(self) -> str:
        return self._sha.hexdigest()

    @property
    def md5(self) -> str | None:
        return None if self._md5 is None else self._md5.hexdigest()


class _Feeder:
    """Hashes chunks on worker threads, one per algorithm, while the caller reads and writes.

    hashlib releases the GIL on large buffers, so hashing overlaps the network and disk I/O
    instead of adding to it; chunks must be immutable (bytes), as they are queued, not copied.
    """

    def __init__(self, h: Hashes):
        self._h = h
        self._queues: list[queue.Queue] = []
        self._threads = []
        for obj in (h._sha, h._md5):
            if obj is None:
                continue
            q: queue.Queue = queue.Queue(maxsize=QUEUED)
            t = threading.Thread(target=self._drain, args=(q, obj), daemon=True)
            t.start()
            self._queues.append(q)
            self._threads.append(t)

    @staticmethod
    def _drain(q: queue.Queue, obj) -> None:
        while (data := q.get()) is not None:
            obj.update(data)

    def update(self, data: bytes) -> None:
        for q in self._queues:
            q.put(data)
        self._h.size += len(data)

    def close(self) -> None:
        for q in self._queues:
            q.put(None)
        for t in self._threads:
            t.join()


def hash_file(path: str | os.PathLike, *, md5: bool = False, limit: int | None = None
              ) -> Hashes:
    """sha256, size (and md5 when asked) of the file at ``path``, read in 1 MiB blocks.

    Only a regular file is read: anything else (a FIFO, ``/dev/zero``, a folder) raises
    NotRegular, an OSError. With ``limit`` (the size the file should have) at most ``limit + 1``
    bytes are read, so a longer file hashes as ``limit + 1`` bytes: a size mismatch, found
    without reading it all."""
    h = Hashes(md5)
    f, _ = open_regular(path)
    with f:
        _feed(h, f, limit)
    return h


def _feed(h: Hashes, f, limit: int | None = None) -> None:
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    left = None if limit is None else limit + 1
    while left is None or left > 0:
        n = f.readinto(buf if left is None or left >= CHUNK else view[:left])
        if not n:
            break
        h.update(view[:n])
        if left is not None:
            left -= n


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0
