"""Atomic writes and their temporaries: a temp file beside the destination, renamed over it on
success; temporaries left by dead processes are found and removed.

Every temporary dlsets makes names its owner, ``<host>@<pid>``: ``.<name>.<host>@<pid>-<tid>.tmp``
(:func:`replacing`), ``.<file>.import-<host>@<pid>`` (``fetch --from``) and
``.<dataset>.removing-<host>@<pid>`` (``remove``). One is stale when it was made on this host and
its process is gone, or the pid now belongs to a process that started after the temporary was
last written (a reused pid). Temporaries of other hosts (a shared file system) are never touched:
their processes cannot be seen from here.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

# Letters, digits and '-' only, so the name parses back unambiguously.
HOST = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname().split(".")[0])[:63] or "host"

_OWNER = r"(?P<host>[A-Za-z0-9-]+)@(?P<pid>\d+)"
_PATTERNS = (
    re.compile(rf"\.(?P<final>.+)\.{_OWNER}-\d+\.tmp"),
    re.compile(rf"\.(?P<final>.+)\.import-{_OWNER}"),
    re.compile(rf"\.(?P<final>.+)\.removing-{_OWNER}"),
)
# dlsets 0.1 named no host (``.<name>.<pid>-<tid>.tmp``, ``.<file>.import-<pid>``): such names are
# taken for this host's only inside the cache, where nothing but dlsets writes.
_LEGACY = (
    re.compile(r"\.(?P<final>.+)\.(?P<pid>\d+)-\d+\.tmp"),
    re.compile(r"\.(?P<final>.+)\.import-(?P<pid>\d+)"),
)
# A pid's start time (from /proc) is known to a clock tick and the boot time to a second.
_SLACK = 2.0


def owner() -> str:
    """``<host>@<pid>`` of this process, as temporaries name it."""
    return f"{HOST}@{os.getpid()}"


def temp_path(final: str | os.PathLike, kind: str = "tmp") -> Path:
    """The temporary beside ``final`` for this process (and thread, for ``tmp``)."""
    final = Path(final)
    if kind == "tmp":
        return final.with_name(f".{final.name}.{owner()}-{threading.get_ident()}.tmp")
    return final.with_name(f".{final.name}.{kind}-{owner()}")


@contextmanager
def replacing(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; it replaces ``path`` if the block succeeds and is
    removed otherwise, so ``path`` is always either the old file or the whole new one.

    Temporaries that dead processes left in the folder are removed first."""
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    clean(final.parent)
    # host, pid and thread: two writers of the same path never share a temp
    tmp = temp_path(final)
    try:
        yield tmp
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)


@dataclass(frozen=True)
class Leftover:
    """A dlsets temporary found in a folder: whose it is and whether that process is gone."""

    path: Path
    host: str
    pid: int
    size: int
    stale: bool

    def describe(self) -> str:
        where = "this host" if self.host == HOST else f"host {self.host}"
        if self.stale:
            return f"{self.size:,} bytes left by process {self.pid} on {where}, which is gone"
        if self.host != HOST:
            return (f"{self.size:,} bytes of process {self.pid} on {where} (whether it still "
                    "runs cannot be seen from here)")
        return f"{self.size:,} bytes of process {self.pid}, still running"


def leftovers(folder: str | os.PathLike, *, legacy: bool = False) -> list[Leftover]:
    """Every dlsets temporary directly in ``folder`` (none when it does not exist); with
    ``legacy``, also the host-less names of dlsets 0.1 (for folders inside the cache)."""
    patterns = _PATTERNS + _LEGACY if legacy else _PATTERNS
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return []
    found = []
    for e in entries:
        if not e.name.startswith("."):
            continue
        m = next((m for p in patterns if (m := p.fullmatch(e.name))), None)
        if m is None:
            continue
        try:
            st = e.stat(follow_symlinks=False)
        except OSError:
            continue
        host, pid = m.groupdict().get("host") or HOST, int(m.group("pid"))
        size = _tree_size(e.path) if e.is_dir(follow_symlinks=False) else st.st_size
        stale = host == HOST and not alive(pid, st.st_mtime)
        found.append(Leftover(Path(e.path), host, pid, size, stale))
    return sorted(found, key=lambda x: x.path.name)


def clean(folder: str | os.PathLike, *, legacy: bool = False) -> list[Leftover]:
    """Remove the stale temporaries in ``folder`` (see :func:`leftovers`); returns them."""
    removed = []
    for x in leftovers(folder, legacy=legacy):
        if x.stale and _delete(x.path):
            removed.append(x)
    return removed


def clean_one(x: Leftover) -> bool:
    """Delete one stale temporary found by :func:`leftovers`; True when it is gone."""
    return x.stale and _delete(x.path)


def _delete(path: Path) -> bool:
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
    except FileNotFoundError:
        return True  # another process cleaned it first
    except OSError:
        return False
    return True


def _tree_size(path: str) -> int:
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(root, f)).st_size
            except OSError:
                pass
    return total


def alive(pid: int, written: float) -> bool:
    """Whether process ``pid`` of this host may still own a temporary last written at
    ``written`` (an epoch time). When in doubt: yes, so nothing live is ever removed."""
    if pid <= 0:
        return False
    if os.name == "nt":  # os.kill(pid, 0) would send CTRL_C_EVENT there, not probe
        return True
    if pid != os.getpid():
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass  # exists, another user's
        except OSError:
            return True
    proc = _proc_stat(pid)
    if proc is None:
        return True  # no /proc (macOS, Windows): the pid exists, so assume it is the owner
    state, started = proc
    if state in ("Z", "X"):  # exited, not yet reaped: it writes nothing more
        return False
    if started is None or started > time.time() + _SLACK:  # no start time, or clocks disagree
        return True
    return started <= written + _SLACK  # else a reused pid: started after the last write


def _proc_stat(pid: int) -> tuple[str, float | None] | None:
    """(state, start time as an epoch time) of ``pid`` from Linux's /proc; None without it."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return None
    state = fields[0].decode(errors="replace")
    try:
        ticks = int(fields[19])  # field 22 of the whole line: start time in ticks since boot
        return state, _boot_time() + ticks / os.sysconf("SC_CLK_TCK")
    except (IndexError, ValueError, OSError):
        return state, None


_BOOT: float | None = None


def _boot_time() -> float:
    global _BOOT
    if _BOOT is None:
        with open("/proc/stat", "rb") as f:
            line = next(ln for ln in f if ln.startswith(b"btime "))
        _BOOT = float(line.split()[1])
    return _BOOT


MARKER = ".dlsets-export.json"
"""Written into every folder :func:`replacing_dir` makes: what wrote it, so that a later export
may replace it (and nothing else)."""


@contextmanager
def replacing_dir(path: str | os.PathLike, *, kind: str) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``path``; if the block succeeds it becomes
    ``path`` (a folder written the same way before is replaced), else it is removed.

    ``path`` must not exist, be an empty folder, or be a folder an earlier export of the same
    ``kind`` wrote holding nothing else; anything else raises OptionError, so an export never
    deletes files it did not write. Temporary folders of dead processes are cleaned up.
    """
    import json
    import shutil

    final = Path(path)
    if final.is_symlink():
        # A link to a folder: the folder it names is written, and the link is kept.
        if not final.exists():
            from ..errors import OptionError

            raise OptionError(f"out={str(final)!r} is a link to {os.readlink(final)}, which "
                              "does not exist: create that folder, or write somewhere else")
        final = Path(os.path.realpath(final))
    _check_replaceable(final, kind)
    tmp = temp_path(final)
    old = temp_path(final.with_name(final.name + ".old"))
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        clean(final.parent)  # temporary folders of dead writers too
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
    except OSError as exc:  # a read-only or full place: said before any work
        raise _write_error(exc, final) from None
    try:
        yield tmp
        names = sorted(p.name for p in tmp.iterdir())
        (tmp / MARKER).write_text(json.dumps({"kind": kind, "files": names}, indent=1) + "\n",
                                  encoding="utf-8")
        if final.exists():
            _check_replaceable(final, kind)  # nobody added files meanwhile
            os.replace(final, old)
        os.replace(tmp, final)
    except OSError as exc:  # a full disk, missing rights: said in one line, no traceback
        raise _write_error(exc, final) from exc
    finally:
        for left in (tmp, old):
            if left.is_symlink():  # rmtree refuses links; such a leftover is only unlinked
                left.unlink(missing_ok=True)
            else:
                shutil.rmtree(left, ignore_errors=True)


def _write_error(exc: OSError, final: Path) -> Exception:
    """The one-line DlsetsError for a failed write of the folder ``final``."""
    from ..errors import DlsetsError
    from .write_errors import write_error

    err = write_error(exc, final, None, f"writing {final}")
    if err is not exc:
        return err
    return DlsetsError(f"writing {final} failed ({exc.strerror or exc}"
                       f"{': ' + str(exc.filename) if exc.filename else ''}); nothing was left "
                       "under that name: check the free space and permissions there")


def _check_replaceable(final: Path, kind: str) -> None:

    from ..errors import OptionError

    if not final.exists():
        return
    if not final.is_dir():
        raise OptionError(f"out={str(final)!r} is a file; a {kind} export writes a folder: give a "
                          "folder that does not exist yet, or an empty one")
    names = sorted(p.name for p in final.iterdir())
    if not names:
        return
    try:
        from ..common import jsontext
        from .regular import read_bounded

        marker = jsontext.loads(read_bounded(final / MARKER, 1 << 24))
        mine = marker.get("kind") == kind and set(names) <= {*marker.get("files", []), MARKER}
    except (OSError, ValueError, AttributeError):
        mine = False
    if not mine:
        shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
        raise OptionError(
            f"out={str(final)!r} already exists and holds other files ({shown}); a {kind} export "
            "goes to a folder that does not exist yet, an empty one, or one an earlier "
            f"{kind} export wrote: give another folder, or remove this one"
        )

