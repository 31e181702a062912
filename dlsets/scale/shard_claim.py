"""One expansion per folder of shards, even when writers of other settings start together.

The first writer creates ``DIR/.dlsets-shards.json`` (the settings' key, the settings, who
claimed it) in one step that only one process can win (a complete temporary file hard-linked
to the name; on NFS too). Every later writer, on any machine, reads it: the same key goes on
(job arrays, Ray tasks, reruns), another is refused with an OptionError naming what differs,
before anything is written. A claim whose writer died on this machine before leaving any
shard, entry or index behind is stale and taken over; anything else stays until the folder
is emptied. A run that created the claim (and maybe the folder) and fails before anything else
is there takes both back (:func:`release`): a failed run leaves nothing it created.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import FormatError, OptionError
from ..store import atomic
from .layout import INDEX, SHARD_FILE, SIDECAR

CLAIM = ".dlsets-shards.json"
_OWNER = re.compile(r"(?P<host>[A-Za-z0-9-]+)@(?P<pid>\d+)")
_TRIES = 5


def claim(folder: Path, key: str, settings: dict, conflict) -> bool:
    """Make ``folder`` (created if needed) the one of expansion ``key``; ``conflict(shown,
    settings)`` builds the OptionError raised when it belongs to another. True when this call
    created the claim (see :func:`release`)."""
    from .shard_index import MAX_ENTRY_BYTES, read_small_json

    make_folder(folder)
    path = folder / CLAIM
    for _ in range(_TRIES):
        try:
            meta = read_small_json(path, MAX_ENTRY_BYTES, "claim of the folder")
        except FormatError as exc:
            raise OptionError(f"{exc}; it should name the expansion this folder holds. Empty "
                              "the folder (hidden files included) or give another") from None
        if meta is not None:
            if isinstance(meta, dict) and meta.get("key") == key:
                return False
            theirs = meta.get("settings") if isinstance(meta, dict) else None
            if _stale(folder, path, meta):
                _take_over(path, meta)
                continue
            raise conflict(f"claimed by {_who(meta)}", theirs)
        tmp = atomic.temp_path(path)
        try:
            tmp.write_text(json.dumps({"key": key, "settings": settings, "owner": atomic.owner(),
                                       "time": time.time()}, sort_keys=True), encoding="utf-8")
            os.link(tmp, path)  # fails if another writer got there first
            return True
        except FileExistsError:
            continue
        except OSError as exc:
            from ..store import space

            raise space.write_error(exc, folder, None, f"writing shards into {folder}") from None
        finally:
            tmp.unlink(missing_ok=True)
    raise OptionError(f"{path} keeps changing under this writer: another process is claiming "
                      f"{folder} for other settings; give another output folder")


@contextmanager
def released_on_failure(folder: Path, made: tuple[bool, bool]) -> Iterator[None]:
    """Around a run: if it fails, :func:`release` what it made (``made``: whether it created
    the claim, and the folder)."""
    try:
        yield
    except BaseException:
        if made[0]:
            release(folder, made[1])
        raise


def release(folder: Path, made_folder: bool) -> None:
    """After a failed run that created the claim: remove it while the folder holds no shard,
    entry, index or temporary (a writer of the same settings that joined keeps it so), and the
    folder too when the run made it and it is empty. Best effort: the run's own error is what
    is reported."""
    path = folder / CLAIM
    try:
        meta = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
        if not isinstance(meta, dict) or meta.get("owner") != atomic.owner():
            return
        if _holds_work(folder):
            return
        path.unlink()
        if made_folder:
            folder.rmdir()  # fails, harmlessly, if something arrived meanwhile
    except (OSError, ValueError):
        pass


def make_folder(folder: Path) -> None:
    """The shard folder made (with its parents), or a WriteError/SpaceError saying why not."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        from ..store import space

        err = space.write_error(exc, folder, None, f"writing shards into {folder}")
        if err is exc:
            raise
        raise err from None


def _who(meta) -> str:
    owner = meta.get("owner") if isinstance(meta, dict) else None
    return f"{owner}" if isinstance(owner, str) else "another writer"


def _stale(folder: Path, path: Path, meta) -> bool:
    """A claim whose owner died on this host, leaving nothing in the folder."""
    m = _OWNER.fullmatch(str(meta.get("owner", ""))) if isinstance(meta, dict) else None
    if m is None or m["host"] != atomic.HOST:
        return False
    try:
        written = path.stat().st_mtime
    except FileNotFoundError:
        return True
    if atomic.alive(int(m["pid"]), written):
        return False
    atomic.clean(folder)  # temporaries of dead writers; live ones (any host) stay
    return not _holds_work(folder)


def _holds_work(folder: Path) -> bool:
    """Whether ``folder`` holds a shard, an entry, the index or a writer's temporary."""
    return any(name != CLAIM and (name == INDEX or SHARD_FILE.fullmatch(name)
                                  or SIDECAR.fullmatch(name)
                                  or (name.startswith(".") and "@" in name))
               for name in os.listdir(folder))


def _take_over(path: Path, meta: dict) -> None:
    # a rename only one taker can win; a taker that finds it moved a newer, live claim (won
    # by another taker meanwhile) puts it back
    gone = path.with_name(f"{path.name}.stale-{atomic.owner()}")
    try:
        os.rename(path, gone)
    except FileNotFoundError:
        return
    try:
        moved = json.loads(gone.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        moved = None
    if moved != meta:
        try:
            os.link(gone, path)
        except OSError:
            pass
    gone.unlink(missing_ok=True)
