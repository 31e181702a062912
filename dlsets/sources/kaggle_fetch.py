"""Kaggle downloads into the cache: the API calls, the pinned archive and its unpacked folder.

Talks to Kaggle's public API (``POST {api}/v1/datasets.DatasetApiService/DownloadDataset``,
camelCase JSON, answered by a redirect to a signed storage URL) with the user's credentials,
then downloads through :func:`dlsets.sources.download.download_file` like every other file: to
``<file>.part``, resumed with ``Range`` (from a freshly signed URL on a later run), checked
against the size the server announces, renamed only when complete, under a per-file lock.
Kaggle publishes no checksum, so the first verified download's sha256 (and size) is pinned in
``pins.json`` and enforced on every later download and use. An unpinned reference resolves to
the dataset's current version, whose number then names the file, so a new upstream version is a
new file with a pin of its own, never a silent change.

Credentials: see :mod:`dlsets.sources.kaggle_auth`. ``DLSETS_KAGGLE_API`` replaces the API's base
URL
(a proxy or a test stand-in). Archives are unpacked by :func:`dlsets.formats.archive.extract_zip`
(names, links and bombs checked first) into ``extracted/v<N>/``.
"""

from __future__ import annotations

import logging
import os
import random
import re
import shutil
import time
from pathlib import Path

from ..common import config
from ..common.deadline import Deadline
from ..errors import (
    AuthError,
    ChecksumError,
    DeadlineError,
    DlsetsError,
    DownloadError,
    FormatError,
    OfflineError,
    OptionError,
)
from ..store import cache, locks, removal
from ..store.names import confined
from ..store.regular import NotRegular
from . import download
from .kaggle_auth import TOKEN_URL, Credentials, credentials, warn_if_plain
from .kaggle_ref import MAX_VERSION, Ref, check_version, parse_ref

log = logging.getLogger("dlsets")

PathLike = str | os.PathLike
API = "https://api.kaggle.com"
KAGGLE_DIR = "_kaggle"


def _resolve(name: str) -> tuple[Ref, dict]:
    """A kaggle: name, or a registry entry with a ``kaggle`` key -> (Ref, entry options)."""
    if name.startswith("kaggle:"):
        return parse_ref(name), {}
    from . import registry

    spec = registry.get(name)
    if spec.format != "kaggle":
        raise OptionError(f"{name} is not a Kaggle dataset")
    return parse_ref(spec.extra["kaggle"]), dict(spec.extra)


def dataset_dir(name: str, cache_dir: PathLike | None = None) -> Path:
    """``<cache>/_kaggle/<owner>/<dataset>``: the downloads, pins and prepared copies."""
    ref, _ = _resolve(name)
    return _Store.folder(ref, cache_dir)


# --- the API -------------------------------------------------------------------------------


def api_base() -> str:
    return os.environ.get("DLSETS_KAGGLE_API", API).rstrip("/")


def _message(resp) -> str:
    try:
        data = resp.json()
    except ValueError:
        return resp.text.strip()[:200]
    if isinstance(data, dict):
        return str(data.get("message") or data.get("error") or "")[:300]
    return ""


def _post(session, creds: Credentials, ref: Ref, service: str, method: str, body: dict,
          deadline: Deadline | None = None):
    """One API call, retried with backoff on connection errors, 429 and 5xx; the response
    (redirects are not followed: the caller wants the storage URL, without our credentials)."""
    import requests

    url = f"{api_base()}/v1/{service}/{method}"
    warn_if_plain(url, creds)
    deadline = deadline or Deadline()
    failures = []
    for attempt in range(download.MAX_ATTEMPTS):
        _check_deadline(deadline, ref, f"asking Kaggle's API ({method})")
        timeout = (deadline.cap(config.CONNECT_TIMEOUT), deadline.cap(config.read_timeout()))
        try:
            resp = session.post(url, json=body, timeout=timeout, allow_redirects=False)
        except requests.RequestException as exc:
            host = download._unresolved_host(exc)
            if host is not None:  # as for downloads: DNS does not heal in seconds
                raise DownloadError(
                    f"{ref}: cannot resolve {host or 'the host'} of Kaggle's API ({url}); "
                    "check the connection (HTTPS_PROXY for a proxy); a version fetched before "
                    "is used offline with DLSETS_OFFLINE=1.") from None
            failures.append(download._reason(exc))
        else:
            if resp.status_code == 429 or resp.status_code >= 500:
                failures.append(f"HTTP {resp.status_code} {resp.reason}")
            else:
                _raise_for(resp, creds, ref)
                return resp
        if attempt + 1 < download.MAX_ATTEMPTS:
            # the downloads' backoff: DLSETS_RETRY_BASE doubling per try, with jitter, capped
            delay = download.retry_base() * 2 ** attempt * random.uniform(0.5, 1.5)
            time.sleep(max(0.0, min(delay, download.RETRY_AFTER_CAP, deadline.left())))
    said = "; ".join(dict.fromkeys(failures))  # the same reason once, not once per try
    raise DownloadError(f"{ref}: Kaggle's API at {url} failed {len(failures)} times: "
                        f"{said}. Check the connection (HTTPS_PROXY for a proxy) "
                        "and try again; a version fetched before is used offline with "
                        "DLSETS_OFFLINE=1.")


def _raise_for(resp, creds: Credentials, ref: Ref) -> None:
    code = resp.status_code
    said = _message(resp)
    said = f" (Kaggle says: {said})" if said else ""
    if code == 401:
        raise AuthError(f"{ref}: Kaggle rejected the credentials from {creds.source} (HTTP 401)"
                        f"{said}. Check them, or create a new API token at {TOKEN_URL}.")
    if code == 403:
        where = (f"{ref.page}/rules" if ref.competition else ref.page)
        what = ("accept the competition's rules" if ref.competition
                else "accept the dataset's terms (or ask its owner for access)")
        raise AuthError(f"{ref}: Kaggle refused access (HTTP 403){said}. Sign in to Kaggle as "
                        f"the user of {creds.source}, open {where} and {what}, then run this "
                        "again.")
    if code == 404:
        version = f" version {ref.version}" if ref.version else ""
        raise DownloadError(f"{ref}: Kaggle has no such dataset{version} (HTTP 404){said}; "
                            f"check the name against {ref.page} (private datasets need their "
                            "owner's credentials)")
    if code >= 400:
        raise DownloadError(f"{ref}: Kaggle answered HTTP {code} {resp.reason}{said}")


def _session(creds: Credentials):
    import requests

    s = requests.Session()
    s.headers["User-Agent"] = download.USER_AGENT
    creds.apply(s)
    return s


def current_version(ref: Ref, creds: Credentials | None = None,
                    deadline: Deadline | None = None) -> int:
    """The dataset's current version number, asked of Kaggle."""
    creds = creds or credentials()
    with _session(creds) as s:
        resp = _post(s, creds, ref, "datasets.DatasetApiService", "GetDataset",
                     {"ownerSlug": ref.owner, "datasetSlug": ref.slug}, deadline)
    try:
        value = resp.json()["currentVersionNumber"]
    except (ValueError, KeyError, TypeError):
        raise FormatError(f"{ref}: Kaggle's answer to GetDataset has no currentVersionNumber; "
                          "give a version: kaggle:OWNER/DATASET/versions/N") from None
    try:  # 1e999, 2.5, true and -3 are not version numbers ("3" is: protobuf's JSON for int64)
        version = check_version(value, "Kaggle's currentVersionNumber")
    except OptionError:
        raise FormatError(f"{ref}: Kaggle's answer to GetDataset gives currentVersionNumber "
                          f"{str(value)[:40]!r}, not an integer from 1 to {MAX_VERSION:,}; give "
                          "a version: kaggle:OWNER/DATASET/versions/N") from None
    return version


def _download_url(ref: Ref, version: int | None, creds: Credentials,
                  deadline: Deadline | None = None) -> str:
    if ref.competition:
        service, method = "competitions.CompetitionApiService", "DownloadDataFiles"
        body = {"competitionName": ref.slug}
    else:
        service, method = "datasets.DatasetApiService", "DownloadDataset"
        body = {"ownerSlug": ref.owner, "datasetSlug": ref.slug}
        if version is not None:
            body["datasetVersionNumber"] = version
    with _session(creds) as s:
        resp = _post(s, creds, ref, service, method, body, deadline)
    location = resp.headers.get("Location")
    if resp.is_redirect and location:
        from urllib.parse import urljoin

        return urljoin(resp.url, location)
    try:
        url = resp.json().get("url")
    except (ValueError, AttributeError):
        url = None
    if not url:
        raise FormatError(f"{ref}: Kaggle answered HTTP {resp.status_code} without a download "
                          "link")
    return url


# --- the cache: download, pin, unpack ------------------------------------------------------


class _Store:
    """One Kaggle dataset's corner of the cache (see cache/README.md)."""

    def __init__(self, ref: Ref, cache_dir: PathLike | None):
        self.ref = ref
        self.dir = self.folder(ref, cache_dir)
        self.files = self.dir / "files"

    @staticmethod
    def folder(ref: Ref, cache_dir: PathLike | None) -> Path:
        return confined(config.cache_root(cache_dir), KAGGLE_DIR, ref.owner, ref.slug,
                        what=f"{ref}: the Kaggle name")

    def file(self, version: int | None) -> str:
        return "data.zip" if version is None else f"v{version}.zip"

    def pins(self) -> dict:
        return cache.read_json(self.dir / "pins.json")

    def records(self) -> dict:
        return cache.read_json(self.dir / "verified.json")

    def cached_versions(self) -> list[int]:
        found = []
        for p in self.files.glob("v*.zip"):
            m = re.fullmatch(r"v(\d+)\.zip", p.name)
            if m and p.name in self.pins():
                found.append(int(m.group(1)))
        return sorted(found)

    def state(self, fname: str, network: bool) -> str:
        path = self.files / fname
        try:
            st = path.stat()
            stat = (st.st_size, st.st_mtime_ns)
        except FileNotFoundError:
            stat = None
        pin = self.pins().get(fname) or {}
        return cache.cache_action(present=stat is not None, stat=stat,
                                  record=self.records().get(fname),
                                  expected_sha256=pin.get("sha256"),
                                  part_exists=cache.part_path(path).exists(), network=network)

    def _update(self, name: str, fname: str, value) -> None:
        with locks.holding(self.dir / "state.lock", str(self.ref)):
            path = self.dir / name
            data = cache.read_json(path)
            if value is None:
                data.pop(fname, None)
            else:
                data[fname] = value
            cache.write_json(path, data)

    def record(self, fname: str, h: download.Hashes) -> None:
        st = (self.files / fname).stat()
        if fname not in self.pins():
            log.info("%s: pinned sha256 %s (%d bytes)", self.ref, h.sha256, h.size)
            self._update("pins.json", fname, {"sha256": h.sha256, "size": h.size})
        self._update("verified.json", fname, {"size": st.st_size, "mtime_ns": st.st_mtime_ns,
                                              "sha256": h.sha256})

    def check(self, fname: str) -> str | None:
        """Hash the cached file against its pin; why it fails, or None (then recorded)."""
        pin = self.pins().get(fname) or {}
        path = self.files / fname
        try:  # no further than the pinned size; a FIFO or device there is damaged, not read
            size = pin.get("size")
            h = download.hash_file(path, limit=size if type(size) is int else None)
        except NotRegular as exc:
            return str(exc)
        if not pin.get("sha256"):
            return "no sha256 was pinned for it"
        if h.sha256 != pin["sha256"] or h.size != pin.get("size", h.size):
            return f"sha256 {h.sha256} ({h.size:,} bytes), pinned {pin['sha256']}"
        self.record(fname, h)
        return None


def _hint(ref: Ref) -> str:
    return ("What you can do: check the connection (HTTPS_PROXY for a proxy) and run the same "
            f"command again: the part already downloaded is kept and resumed. {ref.page}")


def _ensure(store: _Store, version: int | None, creds_fn, progress, offline: bool,
            deadline: Deadline) -> Path:
    """The dataset's archive present and verified (downloaded if needed); holds its lock."""
    from filelock import FileLock

    fname = store.file(version)
    path = store.files / fname
    store.files.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(cache.lock_path(path)))
    locks.take(lock, f"{store.ref}", doing="downloading it", deadline=deadline)
    try:
        action = store.state(fname, network=not offline)
        if action == cache.USE:
            return path
        if action == cache.REHASH:
            why = store.check(fname)
            if why is None:
                return path
            log.warning("%s failed verification (%s); downloading it again", path, why)
            path.unlink(missing_ok=True)
            store._update("verified.json", fname, None)
            action = store.state(fname, network=not offline)
        if action == cache.MISSING:
            raise OfflineError(f"{store.ref}: {fname} is not in the cache and the network is "
                               "forbidden (DLSETS_OFFLINE is set, or download=False); allow it "
                               f"to download from {store.ref.page}")
        creds = creds_fn()
        url = _download_url(store.ref, version, creds, deadline)
        pin = store.pins().get(fname) or {}
        log.info("%s: %s", store.ref, "resuming" if action == cache.RESUME else "downloading")
        try:
            h = download.download_file(
                [url], path, sha256=pin.get("sha256"), size=pin.get("size"),
                progress_bar=progress, desc=str(store.ref), hint=_hint(store.ref),
                deadline=deadline,
                mismatch_hint=(f"What you can do: its sha256 was pinned at the first download; "
                               f"if the data really changed on Kaggle, `dlsets remove "
                               f"{store.ref}` forgets the pin."))
        except ChecksumError:
            raise
        except DownloadError as exc:
            # the signed URL is in the message: it is a credential of sorts, and expires anyway
            kind = DeadlineError if isinstance(exc, DeadlineError) else DownloadError
            raise kind(str(exc).replace(url, "<Kaggle's signed storage URL>")) from None
        from ..formats.archive import zip_members

        if not pin:
            try:  # a cut without Content-Length is caught here, before its hash is pinned
                zip_members(path)
            except FormatError:
                path.unlink(missing_ok=True)
                raise
        store.record(fname, h)
        return path
    finally:
        lock.release()


def _unpack(store: _Store, fname: str, progress) -> tuple[Path, dict]:
    """``extracted/<version>/`` with the archive's files (and a record of their hashes)."""
    from ..formats.archive import extract_zip, is_zip

    stem = fname.removesuffix(".zip")
    dest = store.dir / "extracted" / stem
    marker = store.dir / "extracted" / f"{stem}.json"
    pin = store.pins().get(fname, {})
    done = cache.read_json(marker)
    if dest.is_dir() and done.get("archive_sha256") == pin.get("sha256"):
        return dest, done
    with locks.holding(str(dest) + ".lock", str(store.ref), doing="unpacking it"):
        done = cache.read_json(marker)
        if dest.is_dir() and done.get("archive_sha256") == pin.get("sha256"):
            return dest, done
        if not (store.files / fname).is_file():
            raise _Vanished(f"{store.ref}: {fname} was removed by another process meanwhile")
        # under the lock, unpacking folders of this version are leftovers of killed processes
        for leftover in dest.parent.glob(f".{stem}.*.unpacking"):
            shutil.rmtree(leftover, ignore_errors=True)
        tmp = dest.with_name(f".{stem}.{os.getpid()}.unpacking")
        archive = store.files / fname
        try:
            if is_zip(archive):
                from ..common.progress import bar

                with bar(None, f"{store.ref}: unpacking", progress=progress,
                         unit="file") as pbar:
                    files = extract_zip(archive, tmp, on_file=lambda _: pbar.update(1))
            else:
                from ..formats.archive import extract

                files = {}
                for p in extract(archive, tmp):
                    h = download.hash_file(p)
                    files[p.relative_to(tmp.resolve()).as_posix()] = (h.size, h.sha256)
            shutil.rmtree(dest, ignore_errors=True)
            marker.unlink(missing_ok=True)
            os.replace(tmp, dest)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        done = {"archive": fname, "archive_sha256": pin.get("sha256"),
                "files": {rel: {"size": size, "sha256": sha}
                          for rel, (size, sha) in sorted(files.items())}}
        cache.write_json(marker, done)
    return dest, done


def _fetch(name: str, cache_dir, progress, network: bool = True, deadline: float | None = None
           ) -> tuple[_Store, str, Path, dict]:
    ref, _ = _resolve(name)
    deadline = Deadline(config.deadline(deadline))
    offline = config.offline() or not network
    store = _Store(ref, cache_dir)
    creds_cache: list[Credentials] = []

    def creds() -> Credentials:
        if not creds_cache:
            creds_cache.append(credentials())
        return creds_cache[0]

    version = ref.version
    if not ref.competition and version is None:
        cached = store.cached_versions()
        if offline:
            if not cached:
                raise OfflineError(f"{ref}: no version is in the cache and the network is "
                                   "forbidden (DLSETS_OFFLINE is set, or download=False)")
            version = cached[-1]
        else:
            try:
                version = current_version(ref, creds(), deadline)
            except (DownloadError, OSError) as exc:
                if not cached or isinstance(exc, DeadlineError):
                    raise
                version = cached[-1]
                log.warning("%s: cannot ask Kaggle for the current version (%s); using version "
                            "%d from the cache", ref, exc, version)
    for _ in range(_ROUNDS):
        try:
            path = _ensure(store, version, creds, progress, offline, deadline)
            extracted, record = _unpack(store, path.name, progress)
        except _Vanished as exc:
            # `dlsets remove` waited for our download, then took it: get it again
            log.warning("%s; fetching it again", exc)
            continue
        except OSError as exc:
            raise DlsetsError(f"{ref}: the cache at {store.dir} cannot be used: "
                              f"{exc.strerror or exc}; point --cache-dir or DLSETS_CACHE at a "
                              "folder you can write to") from exc
        return store, path.name, extracted, record
    raise DlsetsError(f"{ref}: its files keep vanishing while they are fetched (removed "
                      f"{_ROUNDS} times by another process); try again when that has stopped")


_ROUNDS = 3
"""Times a fetch starts over when its archive vanishes meanwhile (a concurrent remove)."""


def _check_deadline(deadline: Deadline, ref: Ref, doing: str) -> None:
    if deadline.passed():
        raise DeadlineError(f"{ref}: {deadline.describe()} passed while {doing}; what was "
                            "downloaded is kept for the next fetch. Give it more time.")


class _Vanished(DlsetsError):
    """A file this fetch had was removed by another process (``dlsets remove``)."""


def fetch(name: str, *, cache_dir: PathLike | None = None, progress: bool | None = None,
          deadline: float | None = None) -> Path:
    """Download (once, verified) and unpack a Kaggle dataset; returns the unpacked folder.

    ``name`` is ``kaggle:OWNER/DATASET[/versions/N]``, ``kaggle:competitions/NAME`` or a
    registry entry with a ``kaggle`` key. ``deadline`` (else ``$DLSETS_DEADLINE``): seconds
    the whole call may take, API calls and waits included; past it, DeadlineError, and the
    part downloaded is kept for the next call."""
    return _fetch(name, cache_dir, progress, deadline=deadline)[2]


def fetch_folder(name: str, *, cache_dir: PathLike | None = None, progress: bool | None = None,
                 download: bool = True) -> tuple[Path, Path]:
    """(unpacked folder, where its prepared copies go), for :func:`dlsets.load_folder`;
    ``download=False`` uses only what the cache holds."""
    store, fname, root, _ = _fetch(name, cache_dir, progress, network=download)
    return root, store.dir / "prepared" / fname.removesuffix(".zip")


def status(name: str, *, cache_dir: PathLike | None = None) -> str:
    """"cached" when a version (or the competition's data) is downloaded and pinned, else "-"."""
    ref, _ = _resolve(name)
    store = _Store(ref, cache_dir)
    return "cached" if store.pins() else "-"


def cached_names(cache_dir: PathLike | None = None) -> list[str]:
    """``kaggle:OWNER/DATASET`` of every Kaggle dataset with a folder in the cache, sorted."""
    root = config.cache_root(cache_dir)
    return [f"kaggle:{d.parent.name}/{d.name}"
            for d in sorted(p for p in (root / KAGGLE_DIR).glob("*/*") if p.is_dir())]


def remove(name: str, *, cache_dir: PathLike | None = None,
           wait: float = removal.REMOVE_WAIT) -> Path | None:
    """Remove a Kaggle dataset's cache folder (:func:`dataset_dir`) whole, once every lock in
    it is held (waiting up to ``wait`` seconds); returns it, or None when nothing was cached."""
    return removal.remove_tree(dataset_dir(name, cache_dir), name, wait)
