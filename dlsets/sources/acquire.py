"""Get a dataset's files into the cache, verified: fetch, cached, verify, remove, status.

Each file goes through one decision (:func:`dlsets.cache.cache_action`) and then one action:
use it, re-hash it, resume it, download it, or report it missing. Downloads and repairs of a
file happen under ``<file>.lock``, so several processes fetching at once download it once;
``remove`` takes every lock of the dataset before it renames the folder away.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

from filelock import FileLock

from ..common import config
from ..common.deadline import Deadline
from ..errors import DlsetsError, DownloadError, OfflineError, OptionError, RegistryError
from ..store import atomic, cache, elsewhere, locks, removal
from ..store.names import check_component
from ..store.regular import NotRegular, open_regular
from . import registry
from .registry import DatasetSpec, FileSpec

if TYPE_CHECKING:
    from . import download


def _download_module():
    """dlsets.download, imported when first needed: it imports requests (a tenth of a second),
    which a load of files already in the cache never needs."""
    from . import download

    return download


log = logging.getLogger("dlsets")

PathLike = str | os.PathLike


@dataclass(frozen=True)
class FileStatus:
    """What the cache holds for one registry file (for ``dlsets info``); nothing is hashed."""

    dataset: str
    file: str
    path: Path
    present: bool
    verified: bool
    sha256: str | None
    md5: str | None
    size: int | None
    pinned_sha256: str | None
    urls: tuple[str, ...]

    @property
    def state(self) -> str:
        if self.verified:
            return "verified"
        return "present, not verified yet" if self.present else "not downloaded"

    def describe(self) -> str:
        size = f"{self.size:,} bytes" if self.size is not None else "size unknown"
        if self.sha256:
            sums = f"sha256 {self.sha256}"
        elif self.pinned_sha256:
            sums = f"md5 {self.md5}, sha256 {self.pinned_sha256} (pinned on first download)"
        else:
            sums = f"md5 {self.md5} (sha256 pinned on first download)"
        return f"{self.file}: {self.state}; {size}; {sums}"


@dataclass(frozen=True)
class VerifyResult:
    """The outcome of re-hashing one cached file.

    ``state`` is ``ok``, ``repaired`` (failed or went missing, downloaded again, now verified),
    ``corrupt`` (failed, left alone because repair was off), ``failed`` (failed and the repair
    failed too; the damaged file stays until a repair succeeds, and nothing uses it unhashed),
    ``missing`` (verified once and gone since, or a named dataset has no complete file set),
    ``cleaned`` (a temporary left by a dead process, deleted) or ``leftover`` (such a
    temporary, kept: repair was off, or it belongs to another host).
    """

    dataset: str
    file: str
    path: Path
    state: str
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.state in ("ok", "repaired", "cleaned", "leftover")

    def describe(self) -> str:
        tail = f": {self.detail}" if self.detail else ""
        return f"{self.dataset}/{self.file}: {self.state}{tail}"


@dataclass(frozen=True)
class FileOutcome:
    """How one file of a fetch came to be in the cache: ``action`` is ``cached`` (it was there,
    verified), ``downloaded`` or ``imported`` (copied in from ``fetch(source_dir=...)``)."""

    file: str
    path: Path
    action: str
    size: int = 0
    received: int = 0  # bytes that came over the network (a resumed download: the rest only)
    seconds: float = 0.0
    source: str = ""  # the URL it came from, or the file it was imported from
    note: str = ""

    def describe(self) -> str:
        if self.action == "downloaded":
            per_s = self.received / self.seconds if self.seconds >= 0.01 else 0
            rate = (f", {per_s / 1e6:.1f} MB/s" if per_s >= 1e5
                    else f", {per_s / 1e3:.1f} kB/s" if per_s else "")
            what = (f"downloaded {self.received:,} bytes in {self.seconds:.2f} s{rate} from "
                    f"{self.source}")
        elif self.action == "imported":
            what = f"imported {self.size:,} bytes from {self.source}"
        else:
            what = "cached"
        note = f" ({self.note})" if self.note else ""
        return f"{self.file}: {what}{note} -> {self.path}"


class FetchResult(dict):
    """File name -> path, as :func:`fetch` returns it, with ``details``: file name ->
    :class:`FileOutcome` (downloaded, imported or cached)."""

    def __init__(self, paths: dict[str, Path], details: dict[str, FileOutcome]):
        super().__init__(paths)
        self.details = details


class _Cache:
    """One dataset's corner of the cache: paths, verified.json and pins.json."""

    def __init__(self, spec: DatasetSpec, cache_dir: PathLike | None):
        self.spec = spec
        self.name = spec.name
        self.cache_dir = cache_dir
        self.files = cache.files_dir(spec.name, cache_dir)
        # file -> ((size, mtime_ns), why) of a failed check, so one call hashes a bad file once
        self.failed: dict[str, tuple[tuple[int, int] | None, str]] = {}

    def path(self, file: str) -> Path:
        return self.files / file

    def records(self) -> dict:
        return cache.read_json(cache.verified_path(self.name, self.cache_dir))

    def pins(self) -> dict:
        return cache.read_json(cache.pins_path(self.name, self.cache_dir))

    def expected_sha256(self, fs: FileSpec, pins: dict | None = None) -> str | None:
        if fs.sha256:
            return fs.sha256
        pin = (self.pins() if pins is None else pins).get(fs.name)
        return pin if isinstance(pin, str) else None

    def stat(self, file: str) -> tuple[int, int] | None:
        try:
            st = self.path(file).stat()
        except FileNotFoundError:
            return None
        return st.st_size, st.st_mtime_ns

    def action(self, file: str, *, network: bool, records=None, pins=None) -> str:
        fs = self.spec.files[file]
        path = self.path(file)
        stat = self.stat(file)
        records = self.records() if records is None else records
        return cache.cache_action(
            present=stat is not None,
            stat=stat,
            record=records.get(file),
            expected_sha256=self.expected_sha256(fs, pins),
            part_exists=cache.part_path(path).exists(),
            network=network,
        )

    def mismatch(self, fs: FileSpec, h: download.Hashes) -> str | None:
        """Why hashes ``h`` are not file ``fs`` (None when they are)."""
        bad = []
        if fs.size is not None and h.size != fs.size:
            bad.append(f"size {h.size:,}, expected {fs.size:,}")
        expected = self.expected_sha256(fs)
        if expected and h.sha256 != expected:
            pinned = "" if fs.sha256 else " (pinned on first download)"
            bad.append(f"sha256 {h.sha256}, expected {expected}{pinned}")
        if fs.md5 and h.md5 is not None and h.md5 != fs.md5:
            bad.append(f"md5 {h.md5}, expected {fs.md5}")
        if not expected and (not fs.md5 or h.md5 is None):
            bad.append("the registry gives no checksum to compare with")
        return "; ".join(bad) or None

    def needs_md5(self, fs: FileSpec, pins: dict | None = None) -> bool:
        """md5 is hashed only for a file with no sha256 yet (notMNIST before its first
        download): sha256 alone settles the rest, at twice the speed of both."""
        return fs.md5 is not None and self.expected_sha256(fs, pins) is None

    def check(self, file: str) -> str | None:
        """Hash the cached file; record it when it matches. Returns why it does not, or None."""
        fs = self.spec.files[file]
        before = self.stat(file)
        try:  # read no further than the registry's size: a longer file is damaged already
            h = _download_module().hash_file(self.path(file), md5=self.needs_md5(fs),
                                             limit=fs.size)
        except FileNotFoundError:  # another process is repairing it right now
            return "it was removed while being checked"
        except NotRegular:  # a FIFO or a link to /dev/zero: damaged, never read (nor waited on)
            why = "it is not a regular file (a FIFO, device, socket or folder); it was not read"
            self.failed[file] = (before, why)
            return why
        why = self.mismatch(fs, h)
        if why is None:
            self.record(file, h)
        else:
            self.failed[file] = (before, why)
        return why

    def known_failure(self, file: str) -> str | None:
        """Why ``file`` failed a check earlier in this call, if it is unchanged since."""
        hit = self.failed.get(file)
        return hit[1] if hit is not None and hit[0] == self.stat(file) else None

    def record(self, file: str, h: download.Hashes) -> None:
        """Note ``file`` as verified now (and pin its sha256 when the registry has none).

        The file itself is fine either way: when the state cannot be written (a read-only
        cache) this only warns, and the file is hashed again on its next use.
        """
        try:
            self._record(file, h)
        except OSError as exc:
            log.warning("%s/%s is verified but could not be recorded as such (%s: %s); it "
                        "will be hashed again next time", self.name, file,
                        exc.filename or self.files.parent, exc.strerror or exc)

    def _record(self, file: str, h: download.Hashes) -> None:
        st = self.path(file).stat()
        with FileLock(cache.state_lock_path(self.name, self.cache_dir)):
            vpath = cache.verified_path(self.name, self.cache_dir)
            records = cache.read_json(vpath)
            records[file] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": h.sha256}
            cache.write_json(vpath, records)
            if not self.spec.files[file].sha256:
                ppath = cache.pins_path(self.name, self.cache_dir)
                pins = cache.read_json(ppath)
                if file not in pins:
                    log.info("%s/%s: pinned sha256 %s", self.name, file, h.sha256)
                    pins[file] = h.sha256
                    cache.write_json(ppath, pins)

    def forget(self, file: str) -> None:
        with FileLock(cache.state_lock_path(self.name, self.cache_dir)):
            vpath = cache.verified_path(self.name, self.cache_dir)
            records = cache.read_json(vpath)
            if records.pop(file, None) is not None:
                cache.write_json(vpath, records)

    def usable(self, file: str, records=None, pins=None) -> bool:
        """True when the cached file is verified (re-hashing it only if it changed).

        ``records`` and ``pins``: verified.json and pins.json as read by the caller, so that
        checking a whole file set reads them once.
        """
        action = self.action(file, network=False, records=records, pins=pins)
        if action == cache.USE:
            return True
        if action != cache.REHASH or self.known_failure(file) is not None:
            return False
        why = self.check(file)
        if why is not None:
            log.warning("%s failed verification (%s)", self.path(file), why)
        return why is None

    def lock(self, file: str) -> FileLock:
        self.files.mkdir(parents=True, exist_ok=True)
        return FileLock(cache.lock_path(self.path(file)))

    def clean(self) -> list[atomic.Leftover]:
        """Delete the temporaries that dead processes left in this dataset's folders."""
        gone = []
        for folder in self.folders():
            for x in atomic.clean(folder, legacy=True):
                log.info("%s: deleted %s (%s)", self.name, x.path, x.describe())
                gone.append(x)
        return gone

    def folders(self) -> list[Path]:
        d = self.files.parent
        return [d, self.files, d / "prepared", d / "prepared" / "hdf5"]


def _cache_io(func):
    """Turn an OSError from the cache folder (missing rights, a file where a folder should be)
    into one DlsetsError that says which cache and what to do, instead of a traceback."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except OSError as exc:
            root = config.cache_root(kwargs.get("cache_dir"))
            where = f" ({exc.filename})" if exc.filename else ""
            raise DlsetsError(
                f"the dlsets cache at {root} cannot be used: {exc.strerror or exc}{where}. "
                "Point --cache-dir or DLSETS_CACHE at a folder you can write to, or fix the "
                "permissions of this one."
            ) from exc

    return wrapper


def _acquire(lock: FileLock, what: str, deadline=None) -> bool:
    """Take a file's lock, saying so when another process holds it; True when it had to wait."""
    return locks.take(lock, what, doing="downloading it", deadline=deadline)


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
    by :mod:`dlsets.kaggle`; the result maps their archive's name to its path.
    """
    if name.startswith("kaggle:") or registry.get(name).format == "kaggle":
        from . import kaggle

        store, fname, _, _ = kaggle._fetch(name, cache_dir, progress, deadline=deadline)
        return {fname: store.files / fname}
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
    (a Kaggle dataset: its folder under ``<cache>/_kaggle``).

    Every lock of the dataset is taken first: a fetch, load or verify of it in progress is
    waited for, up to ``wait`` seconds (0: refuse at once); then the folder is renamed away in
    one step and deleted, so the dataset is in the cache whole or not at all.
    """
    if isinstance(wait, bool) or not isinstance(wait, (int, float)) or not (
            math.isfinite(wait) and 0 <= wait <= config.MAX_SECONDS):
        raise OptionError(f"wait={wait!r}: give a number of seconds from 0 to "
                          f"{config.MAX_SECONDS:g}")
    if isinstance(name, str) and (name.startswith("kaggle:") or (
            name in registry.names() and registry.get(name).format == "kaggle")):
        from . import kaggle

        return removal.remove_tree(kaggle.dataset_dir(name, cache_dir), name, wait)
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
