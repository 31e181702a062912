"""Lock files: taken with a message when another process holds them, within a deadline, and
surviving a ``dlsets remove`` that renames their folder away meanwhile.

A lock dies with its process (the OS frees it), so waiting for one is waiting for real work.
Order, to stay free of deadlocks: ``prepared.lock``, then ``files/<file>.lock``, then
``state.lock``; a process holds at most one file lock at a time, and ``remove`` takes them all
in that order.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout

from ..errors import DeadlineError, DlsetsError

log = logging.getLogger("dlsets")

LOCK_PATIENCE = 30.0
"""Seconds to wait for another process's lock before saying so a second time."""
_RETAKES = 5  # a folder removed under a waiter this many times in a row is something else


def take(lock: FileLock, what: str, *, doing: str = "downloading it", deadline=None,
         quiet: bool = False) -> bool:
    """Take ``lock``, waiting as long as its holder needs (or until ``deadline``, a
    :class:`dlsets.sources.download.Deadline`, then DeadlineError). Unless ``quiet``, a wait is
    said at
    once at warning level ("another process is <doing>") and again after LOCK_PATIENCE.

    When the lock's folder is removed while this waits, the folder is made again and the new
    lock taken: what the caller then finds is the state after the removal. Returns True when
    it had to wait for another process.
    """
    said = [quiet]
    waited = False
    path = Path(lock.lock_file)
    for _ in range(_RETAKES):
        try:
            waited |= _take(lock, what, doing, deadline, said)
        except FileNotFoundError:
            waited = True
            path.parent.mkdir(parents=True, exist_ok=True)
            continue
        if path.exists():
            return waited
        lock.release()  # it locked the file of a folder renamed away: not the live lock
        path.parent.mkdir(parents=True, exist_ok=True)
    raise DlsetsError(f"{what}: {path} keeps disappearing (its folder is being removed again "
                      "and again by another program); try again when that has stopped")


def _take(lock: FileLock, what: str, doing: str, deadline, said: list[bool]) -> bool:
    """Take ``lock``; True when another process held it first. ``said[0]``: the wait was told."""
    try:
        lock.acquire(timeout=0)
        return False
    except Timeout:
        pass
    if not said[0]:
        # said at once: a second rank or terminal would otherwise look hung for minutes
        log.warning("%s: another process is %s; waiting for it to finish", what, doing)
        said[0] = True
    try:
        lock.acquire(timeout=_within(LOCK_PATIENCE, deadline))
        return True
    except Timeout:
        _check(deadline, what, lock)
        log.warning("%s: still waiting after %g s for another process that holds %s (work in "
                    "progress, or a stopped process); waiting on", what, LOCK_PATIENCE,
                    lock.lock_file)
    try:
        lock.acquire(timeout=-1 if deadline is None else _within(deadline.left(), deadline))
    except Timeout:
        _check(deadline, what, lock)
        raise
    return True


def _within(seconds: float, deadline) -> float:
    return seconds if deadline is None else max(0.0, min(seconds, deadline.left()))


def _check(deadline, what: str, lock: FileLock) -> None:
    if deadline is not None and deadline.passed():
        raise DeadlineError(
            f"{what}: {deadline.describe()} passed while waiting for another process that holds "
            f"{lock.lock_file}; nothing of this file was changed. Try again when it has finished."
        )


@contextmanager
def holding(path: str | os.PathLike, what: str = "", doing: str = "working on it",
            quiet: bool = True) -> Iterator[FileLock]:
    """``with holding(path):`` the lock file at ``path`` (its folder made if needed), taken by
    :func:`take`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(path))
    take(lock, what or str(path.parent), doing=doing, quiet=quiet)
    try:
        yield lock
    finally:
        lock.release()
