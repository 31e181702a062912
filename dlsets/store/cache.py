"""Where things live in the cache (see cache/README.md for the layout)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..common import config, jsontext
from ..errors import WriteError
from . import names
from .atomic import replacing
from .regular import read_bounded


def dataset_dir(name: str, cache_dir: str | os.PathLike | None = None) -> Path:
    """``<cache>/<name>``: everything dlsets keeps for one dataset; a name that is no single
    safe path component (``..``, a separator, NUL, ...) is an OptionError."""
    return names.confined(config.cache_root(cache_dir), name, what="dataset name")


def check_outside(path: str | os.PathLike, what: str,
                  cache_dir: str | os.PathLike | None = None) -> None:
    """WriteError when the output ``path`` lies inside the cache folder, symbolic links and
    ``..`` resolved: ``dlsets remove`` would delete it with a dataset's folder. Every writer of
    a user's output calls it first; the cache's own files are written without it."""
    root = config.cache_root(cache_dir)
    try:
        if not names.inside(root, path):
            return
        real = os.path.realpath(path)
    except (OSError, ValueError):  # a NUL, a name too long: the output checks say it
        return
    via = f" (it resolves to {real})" if real != str(Path(path).absolute()) else ""
    raise WriteError(f"{what}: {os.fspath(path)}{via} lies inside dlsets' cache folder {root}, "
                     "whose folders `dlsets remove` deletes; nothing was written. Choose a "
                     "path outside the cache")


def files_dir(name: str, cache_dir: str | os.PathLike | None = None) -> Path:
    """``<cache>/<name>/files``: verified downloads under their registry names."""
    return dataset_dir(name, cache_dir) / "files"


def prepared_dir(name: str, cache_dir: str | os.PathLike | None = None,
                 variant: str | None = None) -> Path:
    """``<cache>/<name>/prepared``: arrays parsed by the loaders; for a dataset with variants
    (EMNIST) one folder per variant, ``<cache>/<name>/prepared/<variant>``."""
    folder = dataset_dir(name, cache_dir) / "prepared"
    return folder / variant if variant else folder


def prepared_lock_path(name: str, cache_dir: str | os.PathLike | None = None) -> Path:
    """``<cache>/<name>/prepared.lock``: held while one process builds or checks prepared arrays
    (of any variant)."""
    return dataset_dir(name, cache_dir) / "prepared.lock"


def file_path(name: str, file: str, cache_dir: str | os.PathLike | None = None) -> Path:
    """``<cache>/<name>/files/<file>``: where a verified download lives."""
    return files_dir(name, cache_dir) / file


def part_path(path: Path) -> Path:
    """``<file>.part``: the partial download beside ``path``, resumed by the next fetch."""
    return path.with_name(path.name + ".part")


def lock_path(path: Path) -> Path:
    """``<file>.lock``: held while one process downloads or repairs ``path``."""
    return path.with_name(path.name + ".lock")


def verified_path(name: str, cache_dir: str | os.PathLike | None = None) -> Path:
    """``<cache>/<name>/verified.json``: size, mtime_ns and sha256 of each file last verified."""
    return dataset_dir(name, cache_dir) / "verified.json"


def pins_path(name: str, cache_dir: str | os.PathLike | None = None) -> Path:
    """``<cache>/<name>/pins.json``: sha256 recorded for files the registry knows by md5 only."""
    return dataset_dir(name, cache_dir) / "pins.json"


def state_lock_path(name: str, cache_dir: str | os.PathLike | None = None) -> Path:
    """``<cache>/<name>/state.lock``: held while verified.json or pins.json is rewritten."""
    return dataset_dir(name, cache_dir) / "state.lock"


# verified.json and pins.json hold ~150 bytes per file: this covers a Kaggle dataset of
# hundreds of thousands of files, and bounds what a damaged or hostile one makes dlsets read.
MAX_STATE_JSON = 64 << 20


def read_json(path: Path) -> dict:
    """A JSON object from ``path``; ``{}`` when it is missing or unreadable (it is only a cache)."""
    try:  # only a regular file, and bounded: a FIFO or /dev/zero there is an unreadable cache
        data = jsontext.loads(read_bounded(path, MAX_STATE_JSON).decode("utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def write_json(path: Path, data: dict) -> None:
    """Write ``data`` to ``path`` atomically: a temp file beside it, then ``os.replace``."""
    with replacing(path) as tmp:
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n", encoding="utf-8")


# What to do about one cache file; see :func:`cache_action`.
USE = "use"          # verified before and unchanged since: return it, no hashing
REHASH = "rehash"    # present but never verified, or changed since: hash it before trusting it
RESUME = "resume"    # absent, a .part is there: continue it with an HTTP Range request
DOWNLOAD = "download"  # absent, nothing to resume: download from byte 0
MISSING = "missing"  # absent and the network is forbidden


def cache_action(
    *,
    present: bool,
    stat: tuple[int, int] | None,
    record: dict | None,
    expected_sha256: str | None,
    part_exists: bool,
    network: bool,
) -> str:
    """Decide what one file needs; pure, so it is tested alone (like pooch's download_action).

    ``stat`` is the file's ``(size, mtime_ns)`` now; ``record`` its entry in verified.json
    (``size``, ``mtime_ns``, ``sha256``); ``expected_sha256`` the registry's sha256 or the pinned
    one (None when only an md5 is known and nothing is pinned yet).
    """
    if present:
        if (
            record is not None
            and stat is not None
            and expected_sha256 is not None
            and record.get("size") == stat[0]
            and record.get("mtime_ns") == stat[1]
            and record.get("sha256") == expected_sha256
        ):
            return USE
        return REHASH
    if not network:
        return MISSING
    return RESUME if part_exists else DOWNLOAD
