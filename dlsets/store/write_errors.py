"""A failed write as one error line: the disk full, no rights, a bad path; and the free space
and sizes in words those lines quote.

Below :mod:`dlsets.store.space` (which re-exports every name here) and
:mod:`dlsets.store.atomic`, which both turn OS errors into these messages.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
from pathlib import Path

from ..errors import SpaceError, WriteError

FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
_DENIED = {errno.EROFS, errno.EACCES, errno.EPERM}


def human(n: float) -> str:
    """``n`` bytes as a short decimal size ("47.0 MB")."""
    for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
        if abs(n) < 1000 or unit == "PB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} PB"  # pragma: no cover


def _existing(path: Path) -> Path:
    """The nearest folder at or above ``path`` that exists."""
    p = path
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def one_line(text: object) -> str:
    """``text`` with its line breaks collapsed: HDF5's and the OS's error texts carry some, and
    an error line quoting them must stay one line."""
    return re.sub(r"\s*[\r\n]+\s*", " ", str(text)).strip()


def free_disk(folder: str | os.PathLike) -> int | None:
    """Bytes free to this user on the filesystem holding ``folder`` (None if unknown)."""
    try:
        return shutil.disk_usage(_existing(Path(folder).absolute())).free
    except OSError:
        return None


def path_error(exc: OSError, path: Path, what: str) -> WriteError:
    """WriteError for an OSError met on the output ``path`` that is not about room or rights
    (ENAMETOOLONG, ELOOP, EIO...), the OS's reason in one line."""
    where = (f": {exc.filename}" if exc.filename is not None
             and os.fspath(exc.filename) != os.fspath(path) else "")
    return WriteError(f"{what}: cannot write {path} ({one_line(exc.strerror or exc)}{where}); "
                      "choose another path")


def write_error(exc: OSError, path: Path, needed: int | None, what: str,
                hint: str = "") -> Exception:
    """The DlsetsError to raise for ``exc`` while writing ``path`` (``exc`` itself when it is
    not about the disk or permissions)."""
    reason = one_line(exc.strerror or exc)
    if exc.errno in FULL:
        free = free_disk(path.parent)
        room = (f"{needed:,} bytes ({human(needed)}) needed, " if needed is not None else "")
        room += f"{free:,} ({human(free)}) free now" if free is not None else "free space unknown"
        happened = ("the file system refused to let it grow" if exc.errno == errno.EFBIG
                    else "the disk filled up")
        return SpaceError(
            f"{what}: {happened} while writing {path} ({reason}; {room}); "
            f"nothing was left behind. Free some space{hint or ' or write somewhere else'}."
        )
    if exc.errno in _DENIED:
        return WriteError(f"{what}: cannot write {path} ({reason}); choose a folder "
                          "you can write to")
    if exc.errno in (errno.ENOTDIR, errno.EEXIST, errno.EISDIR):
        return WriteError(f"{what}: cannot write {path} ({reason}: "
                          f"{exc.filename or path}); choose another path")
    return exc
