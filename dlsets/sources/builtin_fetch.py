"""Fetch a registry dataset's files into the cache, verified: downloads (mirrors first), imports
from a folder (``--from``, recognised by checksum), and what is cached or missing.

Each file goes through one decision (:func:`dlsets.store.cache.cache_action`) and then one action:
use it, re-hash it, resume it, download it, or report it missing. Downloads and repairs of a
file happen under ``<file>.lock``, so several processes fetching at once download it once.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

from ..common import config
from ..common.deadline import Deadline
from ..errors import DlsetsError, DownloadError, OfflineError, OptionError
from ..store import atomic, cache, elsewhere, locks
from ..store.regular import open_regular
from . import registry
from .builtin_cache import (
    FetchResult,
    FileOutcome,
    FileStatus,
    PathLike,
    _acquire,
    _Cache,
    _cache_io,
    _download_module,
)
from .registry import DatasetSpec, FileSpec

if TYPE_CHECKING:
    from . import download

log = logging.getLogger("dlsets")


@dataclass
class _Net:
    """What one fetch (or verify) shares across its files: settings read and checked once, the
    deadline, and the hosts that failed it (tried last for the remaining files)."""

    mirrors: Sequence[str]
    seconds: float | None = None
    _policy: download.Policy | None = None
    _deadline: Deadline | None = None
    avoid: set[str] = field(default_factory=set)

    def __post_init__(self):
        self._deadline = Deadline(self.seconds)

    @property
    def deadline(self) -> Deadline:
        return self._deadline

    @property
    def policy(self) -> download.Policy:
        if self._policy is None:  # read when first needed: a cached fetch needs no settings
            self._policy = _download_module().Policy.from_env()
        return self._policy


def _check_mirrors(mirrors: Sequence[str]) -> None:
    """Refuse a mirror that is not an http(s) base URL before anything is downloaded."""
    if isinstance(mirrors, str):
        raise OptionError(f"mirrors= takes a list of base URLs, not the string {mirrors!r}")
    for m, origin in [*((m, "--mirror") for m in mirrors),
                      *((m, "DLSETS_MIRROR") for m in config.env_mirrors())]:
        why = config.url_problem(m)
        if why is not None:
            raise OptionError(
                f"{origin} {m!r} {why}: give an http(s) base URL like "
                "https://host/path/ (the file name is appended)"
            )


def _urls(fs: FileSpec, mirrors: Sequence[str]) -> list[str]:
    bases = [*mirrors, *config.env_mirrors()]
    urls = [b.rstrip("/") + "/" + quote(fs.name) for b in bases] + list(fs.urls)
    return list(dict.fromkeys(urls))


def _describe_file(fs: FileSpec, mirrors: Sequence[str] = ()) -> str:
    size = f"{fs.size:,} bytes" if fs.size is not None else "size unknown"
    sums = f"sha256 {fs.sha256}" if fs.sha256 else f"md5 {fs.md5}"
    lines = [f"  {fs.name} ({size}, {sums})"]
    lines += [f"      {u}" for u in _urls(fs, mirrors)]
    return "\n".join(lines)


def _hint(name: str) -> str:
    return (
        "What you can do: check the connection (and HTTPS_PROXY if you need a proxy); try a "
        f"mirror first with `dlsets fetch {name} --mirror URL` or DLSETS_MIRROR='URL ...' "
        f"(base URLs; the file name is appended); or download the file elsewhere, put it in a "
        f"folder and run `dlsets fetch {name} --from DIR` (it is recognised by checksum)."
    )


def _mismatch_hint(spec: DatasetSpec, fs: FileSpec) -> str:
    """What to do when every server sent other bytes than the registry expects."""
    if fs.sha256 is None:
        entry = (f"its sha256 was pinned at the first download; if the file really changed, "
                 f"`dlsets remove {spec.name}` forgets the pin")
    elif spec.builtin:
        entry = "if the file changed upstream, dlsets' registry needs updating: please report it"
    else:
        entry = (f"{spec.name} is an entry of your registry {spec.source}: check the sha256 "
                 f"(and size, md5) it gives for {fs.name} against the file's own")
    return (
        "What you can do: get a copy you trust, put it in a folder and run "
        f"`dlsets fetch {spec.name} --from DIR` (only the exact bytes the registry names are "
        f"accepted); {entry}."
    )


def _ensure(c: _Cache, file: str, net: _Net, session, progress) -> FileOutcome:
    """Make ``file`` present and verified; the caller holds its lock."""
    fs = c.spec.files[file]
    path = c.path(file)
    network = not config.offline()
    action = c.action(file, network=network)
    note = ""
    if action == cache.USE:
        return _cached(c, file)
    damaged = None
    if action == cache.REHASH:
        known = c.known_failure(file)  # fetch() found it bad moments ago: no second hash
        damaged = known or c.check(file)
        if damaged is None:
            return _cached(c, file)
        if known:
            log.info("%s: downloading it again", path)
        else:
            log.warning("%s failed verification (%s); downloading it again", path, damaged)
        c.forget(file)
        # The damaged copy stays until a verified download replaces it (one rename), so a
        # repair that fails loses nothing and the next verify still finds it to repair.
        note = "the cached copy failed verification"
        part = cache.part_path(path).exists()
        action = cache.MISSING if not network else cache.RESUME if part else cache.DOWNLOAD
    if action == cache.MISSING:
        state = (f"failed verification ({damaged}; it is kept, and refused until repaired)"
                 if damaged else "is not in the cache")
        raise OfflineError(
            f"{c.name}/{file} {state} and the network is forbidden "
            f"(DLSETS_OFFLINE is set). It is:\n{_describe_file(fs, net.mirrors)}\n"
            f"Download it elsewhere, put it in a folder and run `dlsets fetch {c.name} --from DIR`."
        )
    _check_mirrors(net.mirrors)
    log.info("%s/%s: %s", c.name, file, "resuming" if action == cache.RESUME else "downloading")
    expected = c.expected_sha256(fs)
    h = _download_module().download_file(
        _urls(fs, net.mirrors),
        path,
        sha256=expected,
        md5=fs.md5 if c.needs_md5(fs) else None,
        size=fs.size,
        session=session,
        progress_bar=progress,
        desc=f"{c.name}/{file}",
        hint=_hint(c.name),
        mismatch_hint=_mismatch_hint(c.spec, fs),
        policy=net.policy,
        deadline=net.deadline,
        avoid=net.avoid,
    )
    c.record(file, h)
    if h.resumed_from:
        note = ", ".join(filter(None, [note, f"resumed at byte {h.resumed_from:,}"]))
    return FileOutcome(file, path, "downloaded", h.size, h.received, h.seconds, h.url or "",
                       note)


def _cached(c: _Cache, file: str, note: str = "") -> FileOutcome:
    st = c.stat(file)
    return FileOutcome(file, c.path(file), "cached", st[0] if st else 0, note=note)


def _download(c: _Cache, files: Sequence[str], net: _Net, progress) -> dict[str, FileOutcome]:
    import requests

    done = {}
    with requests.Session() as session:
        for file in files:
            lock = c.lock(file)
            waited = _acquire(lock, f"{c.name}/{file}", net.deadline)
            try:
                out = _ensure(c, file, net, session, progress)
            finally:
                lock.release()
            if waited and out.action == "cached":
                out = _cached(c, file, "downloaded by another process meanwhile")
            done[file] = out
    return done


class _CopyError(Exception):
    """Copying a source file into the cache failed (the temporary is already deleted)."""

    def __init__(self, exc: OSError):
        super().__init__(str(exc))
        self.exc = exc


def _copy_hashing(src: Path, tmp: Path, md5: bool) -> download.Hashes:
    download = _download_module()
    h = download.Hashes(md5)
    buf = bytearray(download.CHUNK)
    view = memoryview(buf)
    try:
        fin, _ = open_regular(src)  # replaced by a FIFO since it was hashed: refused
        with fin, open(tmp, "wb") as fout:
            while n := fin.readinto(buf):
                fout.write(view[:n])
                h.update(view[:n])
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise _CopyError(exc) from None
    return h


def _import(c: _Cache, source_dir: PathLike, sets: Sequence[Sequence[str]], net: _Net
            ) -> dict[str, FileOutcome]:
    """Copy into the cache the files under ``source_dir`` that hash to a registry file,
    until one of ``sets`` is complete; returns what was imported.

    Only files of a wanted size are hashed, and they first: a file of any size is hashed only
    while a file whose registry entry has no size (keras' mnist.npz) could still complete a set.
    """
    src = Path(source_dir).expanduser()
    pins = c.pins()
    wanted = {f: fs for f, fs in c.spec.files.items() if not c.usable(f)}
    sizes = {fs.size for fs in wanted.values()}
    candidates = []
    for p in src.rglob("*"):
        if p.name.endswith((".part", ".lock")) or not p.is_file():
            continue
        try:
            size = p.stat().st_size
        except OSError:
            continue
        if size in sizes or None in sizes:
            candidates.append((size not in sizes, str(p), p, size))
    md5 = any(c.needs_md5(fs, pins) for fs in wanted.values())
    imported: dict[str, FileOutcome] = {}
    for unsized, _, p, size in sorted(candidates):
        if any(not any(f in wanted for f in s) for s in sets):
            break  # a complete set: nothing more to look for
        if unsized and all(fs.size is not None for fs in wanted.values()):
            break  # the rest have no wanted size, and no file of unknown size is wanted now
        try:
            h = _download_module().hash_file(p, md5=md5, limit=size)
        except OSError as exc:
            log.warning("%s: skipped, it cannot be read (%s)", p, exc.strerror or exc)
            continue
        for file, fs in list(wanted.items()):
            if c.mismatch(fs, h) is not None:
                continue
            dest = c.path(file)
            t0 = time.monotonic()
            lock = c.lock(file)
            locks.take(lock, f"{c.name}/{file}", doing="downloading or importing it",
                       deadline=net.deadline)
            try:
                if c.usable(file):  # another process put it there while this one waited
                    del wanted[file]
                    continue
                tmp = atomic.temp_path(dest, "import")
                try:
                    copied = _copy_hashing(p, tmp, md5=md5)
                except _CopyError as err:
                    why = _copy_failure(c, p, file, err.exc, imported, wanted)
                    raise DlsetsError(why) from None
                why = c.mismatch(fs, copied)
                if why is not None:
                    tmp.unlink(missing_ok=True)
                    raise DlsetsError(f"{p} changed while it was copied ({why}); try again")
                os.replace(tmp, dest)
                c.record(file, copied)
            finally:
                lock.release()
            log.info("%s/%s: imported from %s", c.name, file, p)
            imported[file] = FileOutcome(file, dest, "imported", copied.size,
                                         seconds=time.monotonic() - t0, source=str(p))
            del wanted[file]
    return imported


def _copy_failure(c: _Cache, src: Path, file: str, exc: OSError, imported: dict,
                  wanted: dict) -> str:
    done = (f"Imported before that, verified and kept in the cache: {', '.join(imported)}"
            if imported else "Nothing was imported")
    rest = [f for f in wanted if f not in imported]
    return (
        f"{c.name}: copying {src} into the cache as {file} failed: {exc.strerror or exc} "
        f"(errno {exc.errno}); its partial copy was deleted. {done}; not imported: "
        f"{', '.join(rest)}. Free some disk space (or point --cache-dir / DLSETS_CACHE at a "
        f"disk with room) and run `dlsets fetch {c.name} --from DIR` again: what is already "
        "imported is not copied again."
    )


def _select(spec: DatasetSpec, files: Iterable[str] | None) -> list[tuple[str, ...]]:
    if files is None:
        return [tuple(s) for s in spec.file_sets]
    if isinstance(files, str):
        files = [files]
    chosen = tuple(dict.fromkeys(files))
    unknown = [f for f in chosen if f not in spec.files]
    if unknown or not chosen:
        raise OptionError(
            f"{spec.name} has no file(s) {unknown}; its files are: {', '.join(spec.files)}"
            if unknown else "files= selects no file; leave it out to fetch the default set"
        )
    return [chosen]


_ROUNDS = 3
"""Times a fetch starts over when files it had vanish meanwhile (a concurrent remove)."""


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
    """:func:`dlsets.sources.acquire.fetch` for the registry's datasets (see there)."""
    spec = registry.get(name)
    sets = _select(spec, files)
    net = _Net(mirrors, config.deadline(deadline))
    if source_dir is not None:  # a wrong --from is an error even when nothing is missing
        src = Path(source_dir).expanduser()
        if not src.is_dir():
            raise OptionError(f"--from {src}: " + ("not a folder" if src.exists()
                                                    else "no such folder"))
    c = _Cache(spec, cache_dir)

    def complete() -> tuple[str, ...] | None:
        records, pins = c.records(), c.pins()
        for s in sets:
            if all(c.path(f).is_file() for f in s) and all(c.usable(f, records, pins) for f in s):
                return s
        return None

    outcomes: dict[str, FileOutcome] = {}
    for _ in range(_ROUNDS):
        done = complete()
        if done is None:
            c.clean()
        if done is None and source_dir is not None:
            imported = _import(c, source_dir, sets, net)
            outcomes.update(imported)
            done = complete()
            if done is None:
                raise OfflineError(_import_failure(c, sets, source_dir, list(imported)))
        if done is None:
            done = sets[0]
            if config.offline():
                missing = [f for f in done if not c.usable(f)]
                if missing:
                    others = [[f for f in s if not c.usable(f)] for s in sets[1:]]
                    raise elsewhere.with_hint(
                        OfflineError(_offline_failure(c, missing, mirrors, others)), name,
                        cache_dir)
            # Files not verified yet are re-checked under their lock: another process may be
            # finishing them right now.
            records, pins = c.records(), c.pins()
            todo = [f for f in done
                    if c.action(f, network=True, records=records, pins=pins) != cache.USE]
            try:
                outcomes.update(_download(c, todo, net, progress))
            except DownloadError as exc:  # a copy in ./cache may be what the user meant
                elsewhere.with_hint(exc, name, cache_dir)
                raise
        gone = [f for f in done if not c.path(f).is_file()]
        if not gone:
            break
        # Another process removed the dataset between two of our files (`dlsets remove` waits
        # for each lock, not for a whole fetch): get what vanished again.
        log.warning("%s: %s vanished while this fetch ran (the dataset was removed by another "
                    "process); fetching again", name, ", ".join(gone))
        for f in gone:
            outcomes.pop(f, None)
    else:
        raise DlsetsError(f"{name}: its files keep vanishing while they are fetched (removed "
                          f"{_ROUNDS} times by another process); try again when that has stopped")
    details = {f: outcomes.get(f) or _cached(c, f) for f in done}
    return FetchResult({f: c.path(f) for f in done}, details)


def _offline_failure(c: _Cache, missing: Sequence[str], mirrors,
                     others: Sequence[Sequence[str]] = ()) -> str:
    """``missing``: the files of the set to download; ``others``: those the alternative file
    sets lack (any one complete set will do)."""
    listing = "\n".join(_describe_file(c.spec.files[f], mirrors) for f in missing)
    for other in others:
        listing += "\nor, instead:\n" + "\n".join(
            _describe_file(c.spec.files[f], mirrors) for f in other)
    return (
        f"{c.name}: {len(missing)} file(s) missing from the cache and the network is forbidden "
        f"(DLSETS_OFFLINE is set). Needed:\n{listing}\n"
        f"Download them on a machine with internet (URLs above), put them in a folder here and "
        f"run `dlsets fetch {c.name} --from DIR` (files are recognised by checksum, under any "
        "name), or unset DLSETS_OFFLINE."
    )


def _import_failure(c: _Cache, sets, source_dir, imported) -> str:
    found = f"imported {', '.join(imported)}; " if imported else "found no matching file; "
    options = []
    for s in sets:
        missing = [f for f in s if not c.path(f).is_file()]
        options.append("\n".join(_describe_file(c.spec.files[f]) for f in missing))
    need = "\n or\n".join(options)
    need += _namesakes(c, sets, Path(source_dir).expanduser())
    return (
        f"{c.name}: {source_dir} does not hold a complete set of its files ({found}files are "
        f"recognised by size and checksum, not by name). Still needed:\n{need}\n"
        f"Add them to the folder and run `dlsets fetch {c.name} --from DIR` again, or fetch "
        "without --from to download them."
    )


def _namesakes(c: _Cache, sets, folder: Path) -> str:
    """What is wrong with the files in ``folder`` that have a needed file's name (a truncated
    or re-compressed copy is the usual story), as lines to add to the failure."""
    lines = []
    for f in sorted({f for s in sets for f in s if not c.path(f).is_file()}):
        fs = c.spec.files[f]
        for p in sorted(folder.rglob(f))[:3]:
            try:
                size = p.stat().st_size
                if fs.size is not None and size != fs.size:
                    why = f"{size:,} bytes, expected {fs.size:,}"
                elif fs.sha256:
                    got = _download_module().hash_file(p, md5=False, limit=size).sha256
                    why = f"sha256 {got}, expected {fs.sha256}"
                else:
                    continue
            except OSError as exc:
                why = f"cannot be read ({exc.strerror or exc})"
            lines.append(f"  {p}: has the name but not the content: {why}")
    if not lines:
        return ""
    return "\nFiles with those names that are not them (damaged, truncated or another " \
        "version):\n" + "\n".join(lines)


@_cache_io
def cached(name: str, *, cache_dir: PathLike | None = None) -> dict[str, Path]:
    """Registry file name -> path of each of ``name``'s files present and verified now.

    No network. A file verified before and unchanged since (size, mtime) is not re-hashed.
    """
    c = _Cache(registry.get(name), cache_dir)
    records, pins = c.records(), c.pins()
    return {f: c.path(f) for f in c.spec.files
            if c.path(f).is_file() and c.usable(f, records, pins)}


@_cache_io
def status(name: str, *, cache_dir: PathLike | None = None) -> list[FileStatus]:
    """One :class:`FileStatus` per registry file of ``name``; cheap: nothing is hashed."""
    c = _Cache(registry.get(name), cache_dir)
    records, pins = c.records(), c.pins()
    out = []
    for file, fs in c.spec.files.items():
        action = c.action(file, network=True, records=records, pins=pins)
        out.append(FileStatus(
            dataset=name,
            file=file,
            path=c.path(file),
            present=action in (cache.USE, cache.REHASH),
            verified=action == cache.USE,
            sha256=fs.sha256,
            md5=fs.md5,
            size=fs.size,
            pinned_sha256=pins.get(file) if not fs.sha256 else None,
            urls=fs.urls,
        ))
    return out
