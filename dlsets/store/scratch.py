"""Room for decoded pixels while a folder is prepared: memory, or a scratch file whose blocks
are all allocated before the first pixel is written.

A memory-mapped file is written by page faults; on a sparse file, a fault that finds the disk
full kills the process with SIGBUS (exit 135, no message, the file left behind). So the disk's
free space is checked first (the size is known after the scan), then every block is allocated
(``posix_fallocate``; zeros written where the file system cannot allocate), so a full disk is
a :class:`dlsets.errors.SpaceError` before decoding starts and writes through the map cannot
fault for want of space.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import numpy as np

from . import space

ZEROS = 16 << 20  # bytes written at a time where blocks cannot be allocated


def allocate(path: Path, offset: int, length: int) -> None:
    """Give ``path``'s bytes ``offset .. offset+length`` real blocks (OSError when the disk
    is full)."""
    fd = os.open(path, os.O_RDWR | getattr(os, "O_CLOEXEC", 0))
    try:
        try:
            os.posix_fallocate(fd, offset, length)
            return
        except AttributeError:
            pass  # no posix_fallocate (macOS, Windows)
        except OSError as exc:
            if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
                raise
        block = bytes(min(ZEROS, length))
        done = 0
        while done < length:
            n = os.pwrite(fd, block[:min(len(block), length - done)], offset + done)
            done += n
        os.fsync(fd)  # delayed allocation: a full disk shows here, not later in a page fault
    finally:
        os.close(fd)


def array(path: Path, shape: tuple, what: str) -> np.ndarray:
    """A uint8 array of ``shape`` memory-mapped from a new file at ``path``, every block
    allocated; SpaceError (the file removed) when the disk cannot hold it."""
    a = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=shape)
    try:
        allocate(path, a.offset, a.nbytes)
    except OSError as exc:
        del a
        path.unlink(missing_ok=True)
        err = space.write_error(exc, path, int(np.prod(shape)), what)
        if err is exc:
            raise
        raise err from None
    return a
