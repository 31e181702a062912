"""Verify and remove a registry dataset's files in the cache: re-hash, repair, report the
temporaries of dead processes; ``remove`` takes every lock of the dataset before it renames
the folder away."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from pathlib import Path

from filelock import FileLock

from ..common import config
from ..errors import DlsetsError, OptionError, RegistryError
from ..store import atomic, cache, removal
from ..store.names import check_component
from . import registry
from .builtin_cache import PathLike, VerifyResult, _acquire, _Cache, _cache_io
from .builtin_fetch import _ensure, _Net

log = logging.getLogger("dlsets")


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
    """:func:`dlsets.sources.acquire.verify` for the registry's datasets (see there)."""
    if isinstance(names, str):
        names = [names]
    explicit = names is not None
    net = _Net(mirrors, config.deadline(deadline))
    root = config.cache_root(cache_dir)
    results: list[VerifyResult] = []
    if names is None:
        known = set(registry.names())
        found = sorted(d.name for d in root.iterdir()
                       if not d.name.startswith(".") and (d / "files").is_dir()) \
            if root.is_dir() else []
        for d in found:
            if d not in known:
                log.warning("%s: in the cache but not in the registry; skipped", root / d)
        names = [d for d in found if d in known]
        results += _leftover_results(root, root, repair, legacy=False)
    import requests

    with requests.Session() as session:
        for name in names:
            c = _Cache(registry.get(name), cache_dir)
            # Listed after the checks without repair: the state files they write clean up
            # their own folder in passing, and what is listed must still be there.
            leftovers = [] if repair else None
            for folder in c.folders() if repair else ():
                leftovers += _leftover_results(folder, c.files.parent, repair, name=name)
            records = c.records()
            for file in c.spec.files:
                if c.path(file).exists() or file in records:  # a FIFO there: damaged
                    results.append(_verify_one(c, file, net, session, progress, repair))
            if leftovers is None:
                leftovers = [r for folder in c.folders()
                             for r in _leftover_results(folder, c.files.parent, repair, name=name)]
            results += leftovers
            reported = {r.file for r in results if r.dataset == name}
            if explicit and not any(all(c.path(f).is_file() for f in s) for s in c.spec.file_sets):
                for file in c.spec.default_files():
                    if not c.path(file).is_file() and file not in reported:
                        results.append(VerifyResult(
                            name, file, c.path(file), "missing",
                            f"not in the cache; run `dlsets fetch {name}`",
                        ))
    return results


def _leftover_results(folder: Path, base: Path, repair: bool, *, name: str | None = None,
                      legacy: bool = True) -> list[VerifyResult]:
    """Stale temporaries in ``folder`` (deleted when ``repair``) and other hosts' (kept)."""
    out = []
    for x in atomic.leftovers(folder, legacy=legacy):
        if not x.stale and x.host == atomic.HOST:
            continue  # a live process's work in progress: nothing to report
        rel = x.path.relative_to(base).as_posix()
        dataset = name or x.path.name.split(".removing-")[0].lstrip(".")
        if x.stale and repair and atomic.clean_one(x):
            out.append(VerifyResult(dataset, rel, x.path, "cleaned", f"{x.describe()}; deleted"))
        else:
            why = "not deleted (no repair)" if x.stale else "kept"
            out.append(VerifyResult(dataset, rel, x.path, "leftover", f"{x.describe()}; {why}"))
    return out


def _verify_one(c: _Cache, file: str, net: _Net, session, progress, repair) -> VerifyResult:
    path = c.path(file)
    lock = c.lock(file)
    _acquire(lock, f"{c.name}/{file}", net.deadline)
    try:
        if not path.exists():  # a FIFO or a device there is checked (damaged), not missing
            if file not in c.records():  # another process removed it while we waited
                return VerifyResult(c.name, file, path, "missing", "removed while waiting")
            why = "missing from the cache, though it was verified before"
            if not repair:
                return VerifyResult(c.name, file, path, "missing",
                                    f"{why}; run `dlsets verify {c.name}` to download it again")
        else:
            why = c.check(file)
            if why is None:
                return VerifyResult(c.name, file, path, "ok")
            c.forget(file)
            if not repair:
                return VerifyResult(c.name, file, path, "corrupt", why)
            # The result says it ("repaired: ..." from the CLI); the log only with --verbose.
            log.info("%s failed verification (%s); downloading it again", path, why)
        try:
            _ensure(c, file, net, session, progress)
        except DlsetsError as exc:
            kept = ("; the damaged file is kept until a repair succeeds (it is hashed, and "
                    "refused, before any use)" if path.exists() else "")
            return VerifyResult(c.name, file, path, "failed",
                                f"{why}; repair failed: {exc}{kept}")
        return VerifyResult(c.name, file, path, "repaired", f"{why}; downloaded again")
    finally:
        lock.release()


REMOVE_WAIT = removal.REMOVE_WAIT


@_cache_io
def remove(name: str, *, cache_dir: PathLike | None = None,
           wait: float = REMOVE_WAIT) -> Path | None:
    """Delete ``<cache>/<name>`` and everything in it; returns the folder, or None if absent
    (``wait`` is checked by :func:`dlsets.sources.acquire.remove`).

    Every lock of the dataset is taken first: a fetch, load or verify of it in progress is
    waited for, up to ``wait`` seconds (0: refuse at once); then the folder is renamed away in
    one step and deleted, so the dataset is in the cache whole or not at all.
    """
    check_component(name, "dataset name")
    if name.startswith("."):  # the cache's own temporaries and removals in progress
        raise OptionError(f"dataset name {name!r}: names starting with '.' are not datasets")
    root = config.cache_root(cache_dir)
    for x in atomic.clean(root):  # folders of removes that were killed half-way
        log.info("deleted %s (%s)", x.path, x.describe())
    d = cache.dataset_dir(name, cache_dir)
    if not d.exists():
        return None
    try:
        held = _hold_dataset(d, name, wait)
    except FileNotFoundError:  # another remove renamed it away while we waited
        if not d.exists():
            return None
        raise
    return removal.remove_held(d, held, name)


def _hold_dataset(d: Path, name: str, wait: float) -> list[FileLock]:
    """Take every lock of dataset folder ``d`` in the order the others take them, within
    ``wait`` seconds; on failure release them and raise DlsetsError saying who holds what."""
    files = d / "files"
    paths = set(files.glob("*.lock")) if files.is_dir() else set()
    try:  # also the locks of files not started yet: a fetch may be about to take one
        spec_files = registry.get(name).files if name in registry.names() else {}
    except RegistryError:
        spec_files = {}
    if spec_files:
        files.mkdir(exist_ok=True)
        paths |= {cache.lock_path(files / f) for f in spec_files}
    return removal.hold([d / "prepared.lock", *sorted(paths), d / "state.lock"], name, wait)
