"""Get a dataset's files into the cache, verified: fetch, cached, verify, remove, status.

These dispatch through the table of sources (:mod:`dlsets.sources.table`): a registry dataset's
files are handled by :mod:`dlsets.sources.builtin_fetch` and :mod:`dlsets.sources.builtin_verify`,
a Kaggle dataset's by :mod:`dlsets.sources.kaggle_fetch`. Every file goes through one decision
(:func:`dlsets.store.cache.cache_action`) and one action, under ``<file>.lock``; ``remove`` takes
every lock of the dataset before it renames the folder away.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from pathlib import Path

from ..common import config
from ..errors import OptionError
from ..store import removal
from . import table
from .builtin_cache import (  # noqa: F401  (importable from here)
    FetchResult,
    FileOutcome,
    FileStatus,
    PathLike,
    VerifyResult,
    _cache_io,
)

REMOVE_WAIT = removal.REMOVE_WAIT


@_cache_io
def fetch(
    name: str,
    *,
    files: Iterable[str] | None = None,
    cache_dir: PathLike | None = None,
    mirrors: Sequence[str] = (),
    source_dir: PathLike | None = None,
    progress: bool | None = None,
    deadline: float | None = None,
) -> FetchResult:
    """Make a complete set of ``name``'s files present and verified; return file name -> path
    (a :class:`FetchResult`: its ``details`` say per file whether it was downloaded, imported
    or found cached).

    A file set already verified in the cache is returned without network. With ``source_dir``
    the files under it are recognised by checksum (any name) and copied in, and the network is
    never used. Otherwise the first file set (or ``files``) is downloaded, from ``mirrors`` and
    ``$DLSETS_MIRROR`` first, then the registry's URLs. ``deadline`` (else
    ``$DLSETS_DEADLINE``): seconds the whole call may take, waits for other processes
    included; past it, :class:`DeadlineError`, and what was downloaded is kept.
    Kaggle datasets (``kaggle:...`` or a registry entry with a ``kaggle`` key) are downloaded
    by :mod:`dlsets.sources.kaggle`; the result maps their archive's name to its path.
    """
    return table.source_for(name, "fetch").fetch(
        name, files=files, cache_dir=cache_dir, mirrors=mirrors, source_dir=source_dir,
        progress=progress, deadline=deadline)


@_cache_io
def cached(name: str, *, cache_dir: PathLike | None = None) -> dict[str, Path]:
    """Registry file name -> path of each of ``name``'s files present and verified now.

    No network. A file verified before and unchanged since (size, mtime) is not re-hashed.
    """
    return table.source_for(name, "cached").cached(name, cache_dir=cache_dir)


@_cache_io
def status(name: str, *, cache_dir: PathLike | None = None) -> list[FileStatus]:
    """One :class:`FileStatus` per registry file of ``name``; cheap: nothing is hashed."""
    return table.source_for(name, "status").status(name, cache_dir=cache_dir)


@_cache_io
def verify(
    names: Iterable[str] | None = None,
    *,
    cache_dir: PathLike | None = None,
    mirrors: Sequence[str] = (),
    progress: bool | None = None,
    repair: bool = True,
    deadline: float | None = None,
) -> list[VerifyResult]:
    """Re-hash every cached file of ``names`` (all datasets in the cache when None).

    A file that fails is downloaded again when ``repair`` (else reported ``corrupt``); it is
    replaced only by a verified download, so a repair that cannot happen (offline) keeps it
    for the next verify. A file verified once and missing since is downloaded again too. A
    dataset named explicitly with no complete file set cached reports its missing files.
    Temporaries left by dead processes are reported, and deleted when ``repair``.
    """
    if isinstance(names, str):
        names = [names]
    kw = dict(cache_dir=cache_dir, mirrors=mirrors, progress=progress, repair=repair,
              deadline=deadline)
    if names is None:  # every dataset in the cache: the registry's source claims None
        return table.source_for(None, "verify").verify(None, **kw)
    # Consecutive names of one source are verified in one call (one session, one deadline).
    results: list[VerifyResult] = []
    group: list[str] = []
    source = None
    for name in names:
        this = table.source_for(name, "verify")
        if group and this is not source:
            results += source.verify(group, **kw)
            group = []
        source = this
        group.append(name)
    if group:
        results += source.verify(group, **kw)
    return results


@_cache_io
def remove(name: str, *, cache_dir: PathLike | None = None,
           wait: float = REMOVE_WAIT) -> Path | None:
    """Delete ``<cache>/<name>`` and everything in it; returns the folder, or None if absent
    (a Kaggle dataset: its folder under ``<cache>/_kaggle``).

    Every lock of the dataset is taken first: a fetch, load or verify of it in progress is
    waited for, up to ``wait`` seconds (0: refuse at once); then the folder is renamed away in
    one step and deleted, so the dataset is in the cache whole or not at all.
    """
    if isinstance(wait, bool) or not isinstance(wait, (int, float)) or not (
            math.isfinite(wait) and 0 <= wait <= config.MAX_SECONDS):
        raise OptionError(f"wait={wait!r}: give a number of seconds from 0 to "
                          f"{config.MAX_SECONDS:g}")
    return table.source_for(name, "remove").remove(name, cache_dir=cache_dir, wait=wait)


NEARBY_STATE = "- (in ./cache)"  # what list shows of a dataset cached in ./cache, not in use


def cache_state(name: str, *, cache_dir: PathLike | None = None) -> str:
    """What the cache holds of registry entry ``name``, as ``dlsets list`` shows it: "cached"
    (a complete file set verified), "prepared", "cached, prepared", "-", or
    :data:`NEARBY_STATE` when it is in ``./cache`` instead; a Kaggle entry: "cached" or "-".
    Cheap: nothing is hashed, loaded or downloaded."""
    from ..store import elsewhere
    from . import registry

    spec = registry.get(name)
    if spec.format == "kaggle":
        from .kaggle_fetch import status as kaggle_status

        return kaggle_status(name, cache_dir=cache_dir)
    from .builtin_prepare import prepared_info

    # status() hashes nothing: listing must stay instant however much is cached
    have = {s.file for s in status(name, cache_dir=cache_dir) if s.verified}
    state = "cached" if any(set(s) <= set(have) for s in spec.file_sets) else "-"
    if any(prepared_info(name, cache_dir=cache_dir, variant=v) is not None
           for v in (list(spec.variants) or [None])):
        state = "prepared" if state == "-" else "cached, prepared"
    if state == "-" and elsewhere.hint(name, cache_dir):
        state = NEARBY_STATE
    return state
