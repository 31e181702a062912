"""Removing one folder of the cache whole, once every lock its users take is held.

Used by :func:`dlsets.sources.acquire.remove` (built-in and registry datasets, whose locks are known
in advance) and for Kaggle datasets and the prepared copies of image folders, whose locks are
found by listing the folder (see :func:`remove_tree`). The folder is renamed away in one step
while the locks are held, so it is in the cache whole or not at all, and a process waiting
for one of its locks (through :func:`dlsets.store.locks.take`) finds the state after the removal.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from filelock import FileLock, Timeout

from ..errors import DlsetsError
from . import atomic

log = logging.getLogger("dlsets")

REMOVE_WAIT = 60.0
"""Seconds a remove waits for a fetch, load or verify of the dataset to finish."""
_ROUNDS = 20  # listings of a folder whose users keep making new locks, before giving up


def hold(order: Iterable[Path], label: str, wait: float,
         more: Callable[[], list[Path]] | None = None,
         last: Iterable[Path] = ()) -> list[FileLock]:
    """Take the locks at ``order``, then those ``more()`` finds until it finds no new one,
    then those at ``last``, all within ``wait`` seconds (0: refuse at once if one is held).
    On failure every lock taken is released and a DlsetsError says who holds what."""
    end = time.monotonic() + wait
    held: list[FileLock] = []
    taken: set[Path] = set()
    said = [False]
    try:
        for p in order:
            _take(p, label, wait, end, said, held, taken)
        for _ in range(_ROUNDS if more else 0):
            new = [p for p in more() if p not in taken]
            if not new:
                break
            for p in new:
                _take(p, label, wait, end, said, held, taken)
        else:
            if more:
                raise DlsetsError(f"{label}: other processes keep starting work on it; nothing "
                                  "was removed. Try again when they have finished.")
        for p in last:
            _take(p, label, wait, end, said, held, taken)
    except BaseException:
        for lock in reversed(held):
            lock.release()
        raise
    return held


def _take(p: Path, label: str, wait: float, end: float, said: list, held: list,
          taken: set) -> None:
    lock = FileLock(str(p))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        if wait <= 0:
            raise DlsetsError(
                f"{label} is in use by another process ({p} is held: a fetch, load or "
                "verify of it is running); nothing was removed. Remove it when that "
                f"has finished, or without --no-wait (wait=0) to wait for it up to "
                f"{REMOVE_WAIT:g} s."
            ) from None
        if not said[0]:
            log.warning("%s: in use by another process (%s is held); waiting up to "
                        "%g s for it to finish before removing it", label, p, wait)
            said[0] = True
        try:
            lock.acquire(timeout=max(0.0, end - time.monotonic()))
        except Timeout:
            raise DlsetsError(
                f"{label}: another process still holds {p} after {wait:g} s (a fetch, "
                "load or verify of it still running, or a stopped process); nothing "
                "was removed. Try again when it has finished, or wait longer with "
                "--wait SECONDS."
            ) from None
    held.append(lock)
    taken.add(p)


def remove_held(d: Path, held: list[FileLock], label: str) -> Path:
    """Rename ``d`` away while ``held`` (its locks) are held, unlink those lock files so their
    waiters start afresh, release them, then delete it; returns ``d``."""
    away = atomic.temp_path(d, "removing")
    try:
        os.rename(d, away)
        # Waiters polling these locks must not take them once released: unlinked, they retry
        # and find the folder gone (and start afresh).
        for lock in held:
            (away / Path(lock.lock_file).relative_to(d)).unlink(missing_ok=True)
    except OSError as exc:
        raise DlsetsError(f"{label}: could not remove {d} ({exc.strerror or exc}); check the "
                          "permissions there and try again") from None
    finally:
        for lock in reversed(held):
            lock.release()
    try:
        shutil.rmtree(away)
    except OSError as exc:
        raise DlsetsError(
            f"{label} is no longer in the cache, but deleting its files in {away} failed: "
            f"{exc.strerror or exc} ({exc.filename}). Delete that folder by hand to free the "
            "space (`dlsets verify` deletes it too, when it can)."
        ) from None
    log.info("removed %s", d)
    return d


def _locks_in(d: Path) -> list[Path]:
    """The lock files under ``d`` but its ``state.lock``: outer ones (prepared copies,
    unpacking) first, then the downloads' (``files/*.lock``), which nest ``state.lock``."""
    found = [Path(top, f) for top, _, files in os.walk(d) for f in files  # errors: skipped
             if f.endswith(".lock") and Path(top, f) != d / "state.lock"]
    return sorted(found, key=lambda p: (p.parent == d / "files", str(p)))


def remove_tree(d: Path, label: str, wait: float = REMOVE_WAIT) -> Path | None:
    """Remove the cache folder ``d`` (a Kaggle dataset's, a folder's prepared copies) after
    taking every lock found in it, within ``wait`` seconds; None when there is nothing."""
    if not d.is_dir():
        return None
    try:
        held = hold((), label, wait, more=lambda: _locks_in(d), last=[d / "state.lock"])
    except FileNotFoundError:  # another remove renamed it away while we waited
        if not d.exists():
            return None
        raise
    return remove_held(d, held, label)
