"""Opening a file that a listing said was a regular file, without trusting the listing.

Between a folder's scan and the read, a file can be replaced by a FIFO (whose ``open`` blocks
until a writer comes, forever), a device or a socket. :func:`open_regular` opens without
blocking (``O_NONBLOCK``; ``O_NOCTTY`` so a terminal never becomes ours) and checks what it
opened (``fstat``), so only regular files are ever read.
"""

from __future__ import annotations

import os
from stat import S_ISREG
from typing import BinaryIO

_FLAGS = (os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
          | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0))


class NotRegular(OSError):
    """What was opened is not a regular file (a FIFO, device, socket or folder)."""


def open_regular(path: str | os.PathLike) -> tuple[BinaryIO, int]:
    """``(file, size)`` for the regular file at ``path``, opened for reading in binary;
    NotRegular when it is anything else (nothing of it is read), OSError as ``open`` raises."""
    fd = os.open(path, _FLAGS)
    try:
        st = os.fstat(fd)
        if not S_ISREG(st.st_mode):
            raise NotRegular(f"{os.fspath(path)} is not a regular file (a FIFO, device, socket "
                             "or folder); not read")
        return os.fdopen(fd, "rb"), st.st_size
    except BaseException:
        os.close(fd)
        raise


class TooLarge(OSError):
    """A file holds more bytes than its format allows; nothing past the bound was read."""


def read_bounded(path: str | os.PathLike, limit: int) -> bytes:
    """The bytes of the regular file at ``path``, at most ``limit`` of them: NotRegular for a
    FIFO, device, socket or folder, TooLarge when it has (or grows to) more than ``limit``."""
    f, size = open_regular(path)
    with f:
        if size > limit:
            raise TooLarge(f"{os.fspath(path)} has {size:,} bytes; at most {limit:,} expected")
        # read(n) allocates n bytes first: ask for what fstat says (and more only if it grew)
        pieces, total, want = [], 0, size + 1
        while total <= limit:
            piece = f.read(min(want, limit + 1 - total))
            if not piece:
                break
            pieces.append(piece)
            total += len(piece)
            want = 1 << 20
    data = b"".join(pieces)
    if len(data) > limit:
        raise TooLarge(f"{os.fspath(path)} has more than {limit:,} bytes; at most {limit:,} "
                       "expected")
    return data
