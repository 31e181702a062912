"""Atomic writes: a temporary file beside the destination, renamed over it on success."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def replacing(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; it replaces ``path`` if the block succeeds and is
    removed otherwise, so ``path`` is always either the old file or the whole new one."""
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    # pid and thread: two writers of the same path, in processes or threads, never share a temp
    tmp = final.with_name(f".{final.name}.{os.getpid()}-{threading.get_ident()}.tmp")
    try:
        yield tmp
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)


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

    from .errors import DlsetsError

    final = Path(path)
    _check_replaceable(final, kind)
    final.parent.mkdir(parents=True, exist_ok=True)
    for stale in [*final.parent.glob(f".{final.name}.*.tmpdir"),
                  *final.parent.glob(f".{final.name}.*.old")]:
        pid = stale.name[len(final.name) + 2:].split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(stale, ignore_errors=True)
    tmp = final.with_name(f".{final.name}.{os.getpid()}-{threading.get_ident()}.tmpdir")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    old = final.with_name(f".{final.name}.{os.getpid()}-{threading.get_ident()}.old")
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
        raise DlsetsError(f"writing {final} failed ({exc.strerror or exc}"
                          f"{': ' + str(exc.filename) if exc.filename else ''}); nothing was left "
                          "under that name: check the free space and permissions there") from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)


def _check_replaceable(final: Path, kind: str) -> None:
    import json

    from .errors import OptionError

    if not final.exists():
        return
    if not final.is_dir():
        raise OptionError(f"--out {final} is a file; a {kind} export writes a folder: give a "
                          "folder that does not exist yet, or an empty one")
    names = sorted(p.name for p in final.iterdir())
    if not names:
        return
    try:
        marker = json.loads((final / MARKER).read_text(encoding="utf-8"))
        mine = marker.get("kind") == kind and set(names) <= {*marker.get("files", []), MARKER}
    except (OSError, ValueError, AttributeError):
        mine = False
    if not mine:
        shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
        raise OptionError(
            f"--out {final} already exists and holds other files ({shown}); a {kind} export "
            "goes to a folder that does not exist yet, an empty one, or one an earlier "
            f"{kind} export wrote: give another folder, or remove this one"
        )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
