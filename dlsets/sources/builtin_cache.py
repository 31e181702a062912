"""A registry dataset's files in the cache: one dataset's corner (:class:`_Cache`: paths,
verified.json, pins.json, hashing against the registry) and what fetch, verify and status
report about its files."""

from __future__ import annotations

import functools
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from filelock import FileLock

from ..common import config
from ..errors import DlsetsError
from ..store import atomic, cache, locks
from ..store.regular import NotRegular
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
