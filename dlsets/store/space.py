"""Room to write and to allocate: check disk space and memory before big work, and turn a
failed write into one error that names the path, the bytes needed and free, and what to do.

Every output dlsets writes (prepared arrays, HDF5 and npz exports, augmented sets, preview
PNGs) goes through :func:`output`: the folder is checked first (a file where a folder should
be, read-only, no permission), then its free space against the size, which is known before
writing; a write that still fails (the disk filled meanwhile) becomes :class:`SpaceError` or
:class:`WriteError`, and nothing is left behind (the temporary file, and folders made for it).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import SpaceError, WriteError
from .atomic import replacing

# write_errors holds what atomic needs too (so atomic need not import space); space was their
# home, and callers still find them here.
from .write_errors import FULL as FULL
from .write_errors import _existing, free_disk, human, path_error, write_error
from .write_errors import one_line as one_line

# Filesystems round files up to whole blocks and HDF5 adds an index: ask for a little more.
MARGIN = 64 << 10


def needed_with_margin(needed: int) -> int:
    return needed + MARGIN + needed // 200


def need_disk(folder: str | os.PathLike, needed: int, what: str, hint: str = "") -> None:
    """SpaceError when ``folder``'s filesystem has less than ``needed`` bytes (and a margin)."""
    free = free_disk(folder)
    if free is not None and needed_with_margin(needed) > free:
        raise SpaceError(
            f"{what}: not enough disk space in {folder}: {needed:,} bytes ({human(needed)}) "
            f"needed, {free:,} ({human(free)}) free; nothing was written. Free some space"
            f"{hint or ' or write somewhere else'}."
        )


def available_memory() -> int | None:
    """Bytes of memory this process can still get: the kernel's MemAvailable, lowered by a
    cgroup limit when there is one (containers); None when unknown."""
    found = []
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    found.append(int(line.split()[1]) * 1024)
                    break
    except (OSError, ValueError, IndexError):
        pass
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit != "max":
            used = int(Path("/sys/fs/cgroup/memory.current").read_text())
            found.append(max(0, int(limit) - used))
    except (OSError, ValueError):
        pass
    if not found:
        try:
            found.append(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
        except (OSError, ValueError, AttributeError):
            pass
    room = _address_space_left()
    if room is not None:
        found.append(room)
    return min(found) if found else None


def _address_space_left() -> int | None:
    """What ``ulimit -v`` (RLIMIT_AS) still lets this process map; None when unlimited."""
    try:
        import resource

        limit = resource.getrlimit(resource.RLIMIT_AS)[0]
        if limit == resource.RLIM_INFINITY:
            return None
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmSize:"):
                    return max(0, limit - int(line.split()[1]) * 1024)
    except (ImportError, OSError, ValueError, IndexError):
        pass
    return None


def need_memory(needed: int, what: str, hint: str = "") -> None:
    """SpaceError when ``needed`` bytes are more than the memory available."""
    avail = available_memory()
    if avail is not None and needed > avail:
        raise SpaceError(
            f"{what} needs {needed:,} bytes ({human(needed)}) of memory, but only "
            f"{avail:,} ({human(avail)}) are available; {hint or 'ask for less'}"
        )


def _unwritable(folder: Path) -> str | None:
    """Why files cannot be created in the existing folder ``folder`` (None if they can)."""
    try:
        if os.statvfs(folder).f_flag & os.ST_RDONLY:
            return "is on a read-only file system"
    except (OSError, AttributeError):  # no statvfs (Windows): os.access below still answers
        pass
    if not os.access(folder, os.W_OK | os.X_OK):
        return "is not writable by this user"
    return None


def check_output(path: str | os.PathLike, what: str = "output") -> Path:
    """``path`` if a file can be written there, else WriteError saying why: it is a folder, a
    file stands where one of its folders should be, or the folder is read-only."""
    p = Path(path)
    try:
        return _check_output(p, what)
    except OSError as exc:  # a name too long, a loop of links...: said, not a traceback
        raise path_error(exc, p, what) from None


def _check_output(p: Path, what: str) -> Path:
    if p.is_dir():
        raise WriteError(f"{what}: {p} is a folder; give a file name")
    folder = _existing(p.absolute().parent)
    if not folder.is_dir():
        raise WriteError(f"{what}: cannot write {p}: {folder} is a file, not a folder; choose "
                         "another path")
    why = _unwritable(folder)
    if why:
        raise WriteError(f"{what}: cannot write {p}: {folder} {why}; choose a folder you can "
                         "write to")
    return p


def _make_parents(folder: Path) -> list[Path]:
    """Create ``folder`` and missing parents; returns those created, innermost last."""
    missing = []
    p = folder
    while not p.exists() and p != p.parent:
        missing.append(p)
        p = p.parent
    folder.mkdir(parents=True, exist_ok=True)
    return missing[::-1]


@contextmanager
def output(path: str | os.PathLike, needed: int | None, what: str,
           hint: str = "") -> Iterator[Path]:
    """A temporary path beside ``path`` that replaces it when the block succeeds.

    Checks first that ``path`` can be written and that its disk has room for ``needed`` bytes
    (None: unknown, not checked); a write that fails for want of space or permission raises
    SpaceError or WriteError naming the path; on any failure the temporary file and the folders
    created for it are removed.
    """
    p = check_output(path, what)
    if needed is not None:
        need_disk(p.absolute().parent, needed, what, hint)
    made: list[Path] = []
    done = False
    try:
        made = _make_parents(p.parent)
        with replacing(p) as tmp:
            yield tmp
        done = True
    except OSError as exc:
        err = write_error(exc, p, needed, what, hint)
        raise (path_error(exc, p, what) if err is exc else err) from None
    finally:
        if not done:
            for d in reversed(made):
                try:
                    d.rmdir()
                except OSError:
                    break
