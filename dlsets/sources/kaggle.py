"""Kaggle datasets (and competition data) as dlsets sources: ``kaggle:OWNER/DATASET[/versions/N]``.

Talks to Kaggle's public API (``POST {api}/v1/datasets.DatasetApiService/DownloadDataset``,
camelCase JSON, answered by a redirect to a signed storage URL) with the user's credentials,
then downloads through :func:`dlsets.download.download_file` like every other file: to
``<file>.part``, resumed with ``Range`` (from a freshly signed URL on a later run), checked
against the size the server announces, renamed only when complete, under a per-file lock.
Kaggle publishes no checksum, so the first verified download's sha256 (and size) is pinned in
``pins.json`` and enforced on every later download and use. An unpinned reference resolves to
the dataset's current version, whose number then names the file, so a new upstream version is a
new file with a pin of its own, never a silent change.

Credentials: see :mod:`dlsets.kaggle_auth`. ``DLSETS_KAGGLE_API`` replaces the API's base URL
(a proxy or a test stand-in).

Archives are unpacked by :func:`dlsets.archive.extract_zip` (names, links and bombs checked
first) into ``extracted/v<N>/``, which is then read as an image folder, or in a built-in
dataset's layout when asked (``like="mnist"``).
"""

from __future__ import annotations

import logging
import os
import random
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from ..common import config
from ..common.deadline import Deadline
from ..data.dataset import Dataset
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
from ..store import cache, locks
from ..store.names import check_component, confined
from ..store.regular import NotRegular
from . import download
from .kaggle_auth import TOKEN_URL, Credentials, credentials, warn_if_plain

log = logging.getLogger("dlsets")

PathLike = str | os.PathLike
API = "https://api.kaggle.com"
WEB = "https://www.kaggle.com"
KAGGLE_DIR = "_kaggle"
_REF = re.compile(r"^(?:kaggle:)?(?:(competitions)/([\w.-]+)|([\w.-]+)/([\w.-]+)"
                  r"(?:/versions/([0-9]+))?)/?$")
MAX_VERSION = 1_000_000
"""The highest version number accepted (from a name, a registry entry or Kaggle's answer)."""


@dataclass(frozen=True)
class Ref:
    """What a ``kaggle:`` name points at: a dataset (owner, slug, optional version) or a
    competition's data (slug, ``owner == "competitions"``)."""

    owner: str
    slug: str
    version: int | None = None

    @property
    def competition(self) -> bool:
        return self.owner == "competitions"

    @property
    def page(self) -> str:
        if self.competition:
            return f"{WEB}/competitions/{self.slug}"
        return f"{WEB}/datasets/{self.owner}/{self.slug}"

    def __str__(self) -> str:
        tail = f"/versions/{self.version}" if self.version else ""
        return f"kaggle:{self.owner}/{self.slug}{tail}"


def parse_ref(name: str) -> Ref:
    """``kaggle:OWNER/DATASET``, ``kaggle:OWNER/DATASET/versions/N`` or
    ``kaggle:competitions/NAME`` (also without the ``kaggle:`` prefix) -> :class:`Ref`."""
    m = _REF.match(name.strip()) if isinstance(name, str) else None
    if not m:
        raise OptionError(f"{str(name)[:120]!r} is not a Kaggle dataset name: give "
                          "kaggle:OWNER/DATASET, kaggle:OWNER/DATASET/versions/N or "
                          "kaggle:competitions/NAME (as in "
                          "the dataset's URL, https://www.kaggle.com/datasets/OWNER/DATASET)")
    try:  # each part becomes a folder of the cache
        if m.group(1):
            return Ref("competitions", check_component(m.group(2), "competition"))
        check_component(m.group(3), "owner")
        check_component(m.group(4), "dataset")
        version = check_version(m.group(5), "version") if m.group(5) else None
    except OptionError as exc:
        raise OptionError(f"Kaggle name {name[:120]!r}: {exc}") from None
    return Ref(m.group(3), m.group(4), version)


def check_version(value: object, where: str) -> int:
    """``value`` as a version number: an integer from 1 to MAX_VERSION (a string of digits
    for a name), else an OptionError quoting it."""
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 7:
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_VERSION:
        shown = repr(value) if not isinstance(value, str) or len(value) <= 40 else \
            f"{value[:20]!r}... ({len(value)} characters)"
        raise OptionError(f"{where}: {shown} is not a version number (an integer from 1 to "
                          f"{MAX_VERSION:,})")
    return value


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

    from .acquire import _acquire

    fname = store.file(version)
    path = store.files / fname
    store.files.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(cache.lock_path(path)))
    _acquire(lock, f"{store.ref}", deadline)
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


def verify(name: str, *, cache_dir: PathLike | None = None, repair: bool = True) -> list[str]:
    """What is wrong with a Kaggle dataset's cache (archives, unpacked files, prepared copies),
    repaired when ``repair``: see :func:`dlsets.kaggle_verify.verify`."""
    from .kaggle_verify import verify as _verify

    return _verify(name, cache_dir=cache_dir, repair=repair)


# --- loading -------------------------------------------------------------------------------


def load_kaggle(name: str, *, like: str | None = None, subdir: str | None = None,
                classes=None, label_mode: str = "fine", dtype: str = "uint8",
                channels: str | None = None, cache_dir: PathLike | None = None,
                progress: bool | None = None, download: bool = True, **folder_options
                ) -> Dataset:
    """A Kaggle dataset as a :class:`Dataset`: downloaded once (verified, pinned), unpacked,
    then read as an image folder (``folder_options`` as for :func:`dlsets.load_folder`:
    ``size``, ``color``, ``resize``, ``test``, ``seed``, ``mask_classes``) or, with
    ``like="mnist"`` (any built-in name), from files in that dataset's layout (IDX files or
    ``mnist.npz``; the CIFAR or notMNIST archive) found in the download."""
    if like is None:
        from .folders import load_folder

        ref, _ = _resolve(name)
        ds = load_folder(str(ref), subdir=subdir, dtype=dtype, channels=channels,
                         cache_dir=cache_dir, progress=progress, download=download,
                         **folder_options)
        ds.name = ds.info["name"] = name
        return ds
    if folder_options:
        raise OptionError(f"{sorted(folder_options)} apply to image folders; a dataset read "
                          f"like {like} keeps that layout")
    return _load_like(name, like, subdir, classes, label_mode, dtype, channels, cache_dir,
                      progress, download)


FOLDER_OPTIONS = ("size", "color", "resize", "test", "seed", "mask_classes")


def load_entry(name: str, **kw) -> Dataset:
    """A registry entry with a ``kaggle`` key: its options, overridden by the caller's (None
    means not given)."""
    from . import registry

    spec = registry.get(name)
    kw = {k: v for k, v in kw.items() if v is not None}
    like = spec.extra.get("like")
    if like:
        for key in (*FOLDER_OPTIONS, "subdir"):
            kw.pop(key, None)
        if spec.classes != registry.get(like).classes:
            kw.setdefault("classes", list(spec.classes))
        return load_kaggle(name, like=like, subdir=spec.extra["options"].get("subdir"), **kw)
    kw.pop("label_mode", None)
    options = {**spec.extra["options"], **kw}
    return load_kaggle(name, **options)


def _like_files(like_spec, root: Path, record: dict, label: str) -> dict[str, str]:
    """The unpacked files that make up a dataset in ``like_spec``'s layout: relative path ->
    sha256 (from the unpack record)."""
    from .loaders import _idx_role

    files = {rel: f["sha256"] for rel, f in record.get("files", {}).items()}
    base = Path(record.get("_root", ""))
    inside = {rel: sha for rel, sha in files.items() if _under(rel, base)}
    if like_spec.format == "idx":
        npz = [r for r in inside if r.lower().endswith(".npz")]
        roles: dict[tuple, str] = {}
        for rel in sorted(inside):
            role = _idx_role(rel.rsplit("/", 1)[-1])
            if None not in role and role not in roles and not rel.lower().endswith(".npz"):
                roles[role] = rel
        if len(roles) == 4:
            return {rel: inside[rel] for rel in roles.values()}
        if len(npz) == 1:
            return {npz[0]: inside[npz[0]]}
        raise FormatError(f"{label}: no complete set of {like_spec.name} files in the download "
                          "(four IDX files named train/t10k images/labels, or one .npz); it "
                          f"holds: {', '.join(sorted(inside)[:12])}")
    archives = [r for r in inside if r.lower().endswith((".tar.gz", ".tgz", ".tar", ".tar.xz",
                                                          ".tar.bz2"))]
    if len(archives) != 1:
        raise FormatError(f"{label}: expected one {like_spec.name} archive (.tar.gz) in the "
                          f"download, found {archives or 'none'}; give subdir= to pick one")
    return {archives[0]: inside[archives[0]]}


def _under(rel: str, base: Path) -> bool:
    return not str(base) or str(base) == "." or rel.startswith(base.as_posix() + "/")


def _load_like(name, like, subdir, classes, label_mode, dtype, channels, cache_dir, progress,
               download):
    from ..data.dataset import Split
    from ..store import prepared
    from . import loaders, registry
    from .registry import DatasetSpec, FileSpec

    loaders._check("dtype", dtype, loaders.DTYPES)
    loaders._check("channels", channels, loaders.CHANNELS)
    loaders._check("label_mode", label_mode, loaders.LABEL_MODES)
    base = registry.get(like)
    if not base.builtin:
        builtins = [b for b in registry.names() if registry.get(b).builtin]
        raise OptionError(f"like={like!r}: give a built-in dataset ({', '.join(builtins)})")
    store, fname, root, record = _fetch(name, cache_dir, progress, network=download)
    record = dict(record, _root=subdir or "")
    chosen = _like_files(base, root, record, str(store.ref))
    files = {rel: root.joinpath(*rel.split("/")) for rel in chosen}
    spec = DatasetSpec(
        name=name, like=like, format=base.format,
        files={rel: FileSpec(rel, sha, None, record["files"][rel]["size"], ())
               for rel, sha in chosen.items()},
        file_sets=(tuple(chosen),), image_shape=base.image_shape,
        classes=tuple(classes) if classes else base.classes,
        coarse_classes=base.coarse_classes, title=name, builtin=False, source=str(store.ref))
    if label_mode == "coarse" and spec.format != "cifar100":
        raise OptionError("label_mode='coarse' exists for CIFAR-100-like datasets only")
    folder = store.dir / "prepared" / f"{fname.removesuffix('.zip')}-like-{like}"

    def usable():
        manifest = prepared.read_manifest(folder)
        if (manifest is None or manifest.get("sources") != chosen
                or manifest.get("format") != spec.format):
            return None
        arrays = prepared.open_arrays(folder, manifest)
        return None if arrays is None else (arrays, manifest)

    got = usable()
    if got is None:
        with locks.holding(str(folder) + ".lock", name, doing="preparing it"):
            got = usable()
            if got is None:
                arrays, manifest = loaders._parse(spec, files, progress)
                manifest = prepared.write(folder, arrays, manifest)
                opened = prepared.open_arrays(folder, manifest)
                if opened is None:
                    raise FormatError(f"{name}: the prepared arrays in {folder} could not be "
                                      "read back right after writing them; check the disk")
                got = opened, manifest
    arrays, manifest = got
    info = loaders._info(spec, manifest, label_mode, folder)
    prefix = "coarse_" if label_mode == "coarse" else ""
    names = loaders._class_names(spec, manifest, label_mode == "coarse")
    splits = {}
    for s in ("train", "test"):
        x = loaders._convert(arrays[f"{s}_images"], dtype, channels)
        splits[s] = Split(x, arrays[f"{s}_{prefix}labels"])
        info["splits"][s]["images_shape"] = list(x.shape)
    info.update(dtype=dtype, kaggle=str(store.ref), archive=fname)
    return Dataset(name, splits["train"], splits["test"], tuple(names), info)


def status(name: str, *, cache_dir: PathLike | None = None) -> str:
    """"cached" when a version (or the competition's data) is downloaded and pinned, else "-"."""
    ref, _ = _resolve(name)
    store = _Store(ref, cache_dir)
    return "cached" if store.pins() else "-"
