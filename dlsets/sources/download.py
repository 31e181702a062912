"""HTTP transport: stream one file to ``<file>.part``, hashing as bytes arrive, then rename.

:func:`download_file` tries each URL in order. On one URL it retries connection errors,
timeouts, 429 and 5xx with exponential backoff and jitter (``Retry-After`` honoured up to
:data:`RETRY_AFTER_CAP`), resumes an interrupted body with ``Range: bytes=<have>-``, and moves on
to the next URL for 404 and other 4xx, a host name that does not resolve, a refused redirect or a
checksum failure. A file whose size or hash is wrong is never renamed into place.

A source is left for the next one, which continues from the partial file, when it stays below
:class:`Policy`'s minimum rate (averaged over a window of transfer time: a crawl or repeated
stalls), breaks off :data:`MAX_TRIES` times, or keeps failing (a try that moved less than
:data:`MIN_PROGRESS` is a failure); its base URL (:func:`source`) is then tried last for the rest
of the fetch (``avoid``). A :class:`Deadline` bounds the whole fetch.
"""

from __future__ import annotations

import hashlib
import logging
import os
import queue
import random
import re
import socket
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import requests
import urllib3

from ..common import config, progress
from ..common.deadline import Deadline
from ..errors import ChecksumError, DeadlineError, DlsetsError, DownloadError, OptionError
from ..store import space
from ..store.regular import open_regular

log = logging.getLogger("dlsets")

CHUNK = 1 << 20
"""Bytes per read and write; big, so the per-chunk Python overhead stays negligible."""
MAX_ATTEMPTS = 4
"""Tries per URL for retryable failures; an attempt that made progress does not count."""
MAX_TRIES = 10
"""Hard cap on tries per URL, progress or not (a server that breaks off every few bytes)."""
MIN_PROGRESS = 64 << 10
"""Bytes a failed try must add beyond the most its URL ever gave for it to count as progress
(which resets that URL's failure count): a stalling server trickles a kilobyte or so per request
to look alive, while a real transfer cut by a blip has moved far more than this by then."""
RETRY_AFTER_CAP = 30.0
"""Longest ``Retry-After`` (and backoff) dlsets waits before a retry, in seconds."""
MAX_REDIRECTS = 10
USER_AGENT = f"dlsets python-requests/{requests.__version__}"

_CONTENT_RANGE = re.compile(r"^\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*$")
# Everything a broken connection can raise while the body is read.
_NET_ERRORS = (requests.RequestException, urllib3.exceptions.HTTPError, OSError)


def retry_base() -> float:
    """First backoff delay in seconds: ``$DLSETS_RETRY_BASE`` (default 1); doubles per retry."""
    return config.retry_base()


@dataclass(frozen=True)
class Policy:
    """How long dlsets stays with one source; read from the DLSETS_* settings at the start of a
    fetch, so a bad value fails before anything is downloaded."""

    read_timeout: float = config.DEFAULT_READ_TIMEOUT
    retry_base: float = 1.0
    min_rate: float = config.DEFAULT_MIN_RATE  # bytes/s; 0: any rate will do
    window: float = config.DEFAULT_RATE_WINDOW  # seconds of transfer the rate is averaged over

    @classmethod
    def from_env(cls) -> Policy:
        return cls(config.read_timeout(), config.retry_base(), config.min_rate(),
                   config.rate_window())


class _Meter:
    """Bytes received from one source against its time spent transferring (backoff sleeps
    excluded), so a crawl and repeated stalls are both measured as a rate over a window."""

    def __init__(self, policy: Policy):
        self.min_rate, self.window = policy.min_rate, policy.window
        self.total = 0
        self._spent = 0.0  # transfer seconds of finished attempts
        self._since: float | None = None  # start of the attempt in progress
        self._samples: deque = deque([(0.0, 0)])  # (transfer seconds, total bytes), thinned

    def start(self) -> None:
        self._since = time.monotonic()

    def stop(self) -> None:
        if self._since is not None:
            self._spent += time.monotonic() - self._since
            self._since = None

    def clock(self) -> float:
        return self._spent + (time.monotonic() - self._since if self._since is not None else 0.0)

    def add(self, n: int) -> None:
        self.total += n
        t = self.clock()
        if t - self._samples[-1][0] >= self.window / 32:  # a few dozen samples per window
            self._samples.append((t, self.total))

    def too_slow(self) -> str | None:
        """Why this source is too slow to stay with, or None (always None before one window)."""
        if self.min_rate <= 0:
            return None
        t = self.clock()
        if t < self.window:
            return None
        samples = self._samples
        while len(samples) > 1 and samples[1][0] <= t - self.window:
            samples.popleft()
        t0, n0 = samples[0]  # at or before the window's start: the count errs on the kind side
        got = self.total - n0
        if got >= self.min_rate * (t - t0):
            return None
        return (f"too slow: {got:,} bytes in its last {t - t0:.3g} s of transfer, "
                f"{got / (t - t0):,.0f} bytes/s, below DLSETS_MIN_RATE={self.min_rate:,.0f} "
                f"(averaged over DLSETS_RATE_WINDOW={self.window:g} s)")


class Hashes:
    """sha256 (and md5 when asked) of a byte stream, updated in one pass."""

    def __init__(self, md5: bool = False):
        self._want_md5 = md5
        # What download_file adds about the transfer that produced these bytes.
        self.url: str | None = None
        self.received = 0  # bytes that came over the network in this call
        self.seconds = 0.0
        self.resumed_from = 0  # bytes of an earlier partial download that were reused
        self.reset()

    def reset(self) -> None:
        """Forget everything hashed so far."""
        self._sha = hashlib.sha256()
        self._md5 = hashlib.md5(usedforsecurity=False) if self._want_md5 else None
        self.size = 0

    def update(self, data) -> None:
        self._sha.update(data)
        if self._md5 is not None:
            self._md5.update(data)
        self.size += len(data)

    @property
    def sha256(self) -> str:
        return self._sha.hexdigest()

    @property
    def md5(self) -> str | None:
        return None if self._md5 is None else self._md5.hexdigest()


class _Feeder:
    """Hashes chunks on worker threads, one per algorithm, while the caller reads and writes.

    hashlib releases the GIL on large buffers, so hashing overlaps the network and disk I/O
    instead of adding to it; chunks must be immutable (bytes), as they are queued, not copied.
    """

    def __init__(self, h: Hashes):
        self._h = h
        self._queues: list[queue.Queue] = []
        self._threads = []
        for obj in (h._sha, h._md5):
            if obj is None:
                continue
            q: queue.Queue = queue.Queue(maxsize=16)
            t = threading.Thread(target=self._drain, args=(q, obj), daemon=True)
            t.start()
            self._queues.append(q)
            self._threads.append(t)

    @staticmethod
    def _drain(q: queue.Queue, obj) -> None:
        while (data := q.get()) is not None:
            obj.update(data)

    def update(self, data: bytes) -> None:
        for q in self._queues:
            q.put(data)
        self._h.size += len(data)

    def close(self) -> None:
        for q in self._queues:
            q.put(None)
        for t in self._threads:
            t.join()


def hash_file(path: str | os.PathLike, *, md5: bool = False, limit: int | None = None
              ) -> Hashes:
    """sha256, size (and md5 when asked) of the file at ``path``, read in 1 MiB blocks.

    Only a regular file is read: anything else (a FIFO, ``/dev/zero``, a folder) raises
    NotRegular, an OSError. With ``limit`` (the size the file should have) at most ``limit + 1``
    bytes are read, so a longer file hashes as ``limit + 1`` bytes: a size mismatch, found
    without reading it all."""
    h = Hashes(md5)
    f, _ = open_regular(path)
    with f:
        _feed(h, f, limit)
    return h


def _feed(h: Hashes, f, limit: int | None = None) -> None:
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    left = None if limit is None else limit + 1
    while left is None or left > 0:
        n = f.readinto(buf if left is None or left >= CHUNK else view[:left])
        if not n:
            break
        h.update(view[:n])
        if left is not None:
            left -= n


class _Retry(Exception):
    """A failure worth retrying on the same URL."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class _Skip(Exception):
    """A failure that retrying this URL will not fix: move on to the next one.

    ``mismatch``: the server sent (or announced) other bytes than the registry describes.
    ``leave``: the source itself failed (too slow, stalling, breaking off, unreachable): its
    host goes last for the rest of the fetch, and moving on is said at warning level.
    """

    def __init__(self, message: str, mismatch: bool = False, leave: bool = False):
        super().__init__(message)
        self.mismatch = mismatch
        self.leave = leave


class _Deadline(Exception):
    """The fetch's deadline passed."""


def origin(url: str) -> str:
    """``scheme://host[:port]`` of ``url``."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def source(url: str) -> str:
    """``url`` up to its last ``/`` (scheme and host lowercased): the mirror a slow or failing
    URL is remembered by. Per base URL, not per host: two mirrors on one host (a CDN, a
    university server) are told apart, so leaving one does not demote the other."""
    path = urlsplit(url).path
    return origin(url) + path[: path.rfind("/") + 1]


def check_urls(urls: Sequence[str]) -> None:
    """OptionError naming the first URL that cannot even be parsed (a mirror given to the API
    or --mirror, say), before anything is tried; one that is only not http(s) is skipped when
    its turn comes, as before."""
    for u in urls:
        why = config.url_problem(u)
        if why and why.startswith("cannot be parsed"):
            raise OptionError(f"URL {u!r} {why}: check the mirror (--mirror, mirrors=, "
                              "DLSETS_MIRROR) or the registry entry it came from")


def download_file(
    urls: Sequence[str],
    dest: str | os.PathLike,
    *,
    sha256: str | None,
    md5: str | None = None,
    size: int | None = None,
    session: requests.Session | None = None,
    progress_bar: bool | None = None,
    desc: str | None = None,
    hint: str = "",
    mismatch_hint: str = "",
    policy: Policy | None = None,
    deadline: Deadline | None = None,
    avoid: set[str] | None = None,
) -> Hashes:
    """Download to ``dest`` from the first URL that delivers the right bytes; return their hashes
    (with ``url``, ``received``, ``seconds`` and ``resumed_from`` set).

    Bytes go to ``<dest>.part`` (kept between calls, so the next call resumes it), hashed as
    they arrive; only when size, sha256 and md5 (those given) match is it renamed to ``dest``.
    ``policy`` (default: from the environment) says when a source is too slow to stay with;
    the next URL then continues from the partial file, and the URL's :func:`source` is added
    to ``avoid``: URLs whose source is in ``avoid`` are tried after all others.
    Raises :class:`DownloadError` listing every URL and what it said (``hint`` appended); when
    every URL sent bytes of another size or checksum, :class:`ChecksumError` (a DownloadError)
    with ``mismatch_hint`` appended instead; :class:`DeadlineError` when ``deadline`` passes
    (the partial file is kept). Raises :class:`DlsetsError` when the disk refuses a write.
    """
    check_urls(urls)
    dest = Path(dest)
    part = dest.with_name(dest.name + ".part")
    dest.parent.mkdir(parents=True, exist_ok=True)
    policy = policy or Policy.from_env()
    deadline = deadline or Deadline()
    avoid = set() if avoid is None else avoid
    name = desc or dest.name
    order = [u for u in urls if source(u) not in avoid] + [u for u in urls if source(u) in avoid]
    own = session is None
    session = session or requests.Session()
    tried: list[str] = []
    mismatches = 0
    carry: list[Hashes] = []  # hashes of what this call wrote to part, so a resume need not rehash
    meters: list[_Meter] = []  # one per URL tried: the bytes each sent
    t0 = time.monotonic()
    bar = progress.bar(size, name, progress=progress_bar, unit="B")
    try:
        for i, url in enumerate(order):
            try:
                h = _from_url(session, url, part, dest, sha256, md5, size, bar, carry, policy,
                              deadline, meters)
                h.url, h.seconds = url, time.monotonic() - t0
                h.received = sum(m.total for m in meters)
                h.resumed_from = max(0, h.size - h.received)  # not sent now: from an earlier call
                return h
            except _Skip as exc:
                tried.append(f"  {url}: {exc}")
                mismatches += exc.mismatch
                if exc.leave:
                    avoid.add(source(url))
                if exc.leave and i + 1 < len(order):
                    # Time was lost on it: say so now, not only with --verbose.
                    have = _size(part)
                    log.warning("%s: leaving %s (%s); trying %s%s", name, url, exc,
                                order[i + 1], f" from byte {have:,}" if have else "")
                else:  # said once, in the error below; the log repeats it with --verbose
                    log.info("%s: %s", url, exc)
            except _Deadline:
                have = _size(part)
                kept = (f"; the {have:,} bytes received are kept in {part} and the next fetch "
                        "continues from there" if have else "")
                listing = "\n".join([*tried, f"  {url}: stopped at the deadline"])
                raise DeadlineError(
                    f"{name}: {deadline.describe()} passed{kept}. Tried:\n{listing}\n"
                    "Give it more time, or try a faster mirror with --mirror URL."
                ) from None
    finally:
        bar.close()
        if own:
            session.close()
    want = f"{size:,} bytes" if size is not None else "size unknown"
    sums = f"sha256 {sha256}" if sha256 else f"md5 {md5}"
    head = f"could not download {name} ({want}, {sums})"
    listing = "\n".join(tried or ["  (no URL to try)"])
    if tried and mismatches == len(tried):
        raise ChecksumError(
            f"{head}: every source sent other bytes than the registry expects; tried:\n"
            f"{listing}\nThe servers answered, so the connection is not the problem: the file "
            "may have changed upstream, or a proxy between here and the servers alters it."
            + (f"\n{mismatch_hint}" if mismatch_hint else "")
        )
    have = _size(part)
    if have:
        hint = (f"The {have:,} bytes received are kept in {part}; the next fetch continues "
                "from there.\n" + hint)
    if any("DLSETS_MIN_RATE" in t for t in tried):
        hint += ("\nIf this connection is really that slow, lower DLSETS_MIN_RATE (0 accepts any "
                 "rate).")
    raise DownloadError(f"{head}; tried:\n{listing}" + (f"\n{hint}" if hint else ""))


def _from_url(session, url, part, dest, sha256, md5, size, bar, carry, policy: Policy,
              deadline: Deadline, meters: list) -> Hashes:
    failures = tries = 0
    restarted = False
    high = _size(part)  # progress means bytes beyond the most this URL ever gave us
    meter = _Meter(policy)
    meters.append(meter)
    while True:
        if deadline.passed():
            raise _Deadline
        tries += 1
        try:
            h = _attempt(session, url, part, sha256, md5, size, bar, carry, policy, deadline,
                         meter)
        except _Retry as exc:
            now = _size(part)
            failures = 1 if now >= high + MIN_PROGRESS else failures + 1
            high = max(high, now)
            if failures >= MAX_ATTEMPTS:
                raise _Skip(f"{exc} ({tries} attempts)", leave=True) from None
            if tries >= MAX_TRIES:
                raise _Skip(f"{exc}; broke off {tries} times", leave=True) from None
            # Between tries the rate counts from the second on: one timeout is still retried.
            slow = meter.too_slow() if tries >= 2 else None
            if slow:
                raise _Skip(f"{slow}; last: {exc}", leave=True) from None
            if deadline.passed():
                raise _Deadline from None
            delay = min(_delay(failures, exc.retry_after, policy.retry_base), deadline.left())
            log.info("%s: %s; retrying in %.2f s", url, exc, delay)
            time.sleep(max(delay, 0.0))
            continue
        if isinstance(h, str):
            # Bytes hashed wrong. When part of them came from an earlier transfer, that prefix
            # may be the culprit: start this URL over from byte 0 once before giving up on it.
            part.unlink(missing_ok=True)
            carry.clear()
            if h.startswith("resumed:") and not restarted:
                restarted = True
                log.warning("%s: %s; downloading from byte 0 again", url, h[8:])
                continue
            raise _Skip(h.removeprefix("resumed:"), mismatch=True)
        try:
            os.replace(part, dest)
        except OSError as exc:
            raise _rename_error(part, dest, exc) from None
        return h


def _rename_error(part: Path, dest: Path, exc: OSError) -> DlsetsError:
    if not part.exists():  # a true message, not "kept there", when the folder went away
        return DlsetsError(
            f"the download of {dest.name} was complete and verified, but {part} disappeared "
            f"before it could be renamed to {dest} ({exc.strerror or exc}): its folder was "
            "removed meanwhile (by `dlsets remove` or another program). Nothing was kept; "
            "fetch again."
        )
    return DlsetsError(
        f"could not move the verified download {part} to {dest}: "
        f"{exc.strerror or exc}. It is kept there and the next fetch uses it without "
        f"downloading again: free the name {dest} (or fix the folder's permissions) and "
        "fetch again."
    )


def _delay(failures: int, retry_after: float | None, base: float | None = None) -> float:
    if retry_after is not None:
        return min(max(retry_after, 0.0), RETRY_AFTER_CAP)
    backoff = (retry_base() if base is None else base) * 2 ** (failures - 1)
    return min(backoff * random.uniform(0.5, 1.5), RETRY_AFTER_CAP)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _attempt(session, url, part, sha256, md5, size, bar, carry: list, policy, deadline,
             meter) -> Hashes | str:
    """One request. Returns the hashes of a complete ``part``, or a checksum-failure message
    (prefixed ``resumed:`` when an earlier prefix was reused); raises _Retry or _Skip.

    ``carry`` holds the hashes of the bytes an earlier attempt in this call wrote; when the
    part is exactly that long they are reused, else the part on disk is hashed again.
    """
    have = _size(part)
    if size is not None and have > size:
        _truncate(part)
        have = 0
    if carry and carry[0].size == have:
        h = carry.pop()
    else:
        carry.clear()
        h = Hashes(md5 is not None)
        if have:
            with open(part, "rb") as f:
                _feed(h, f)
    bar.reset(total=size)
    bar.update(have)
    if size is not None:
        complete = have == size
    else:  # size unknown: a part killed just before its rename is recognised by its hash
        complete = bool(have and sha256 and h.sha256 == sha256 and (not md5 or h.md5 == md5))
    if not complete:
        try:
            have = _transfer(session, url, part, h, have, size, bar, policy, deadline, meter)
        except (_Retry, _Skip, _Deadline):
            carry[:] = [h]  # what part holds now, for the next attempt or URL
            raise
    resumed = have > 0
    got = h.size
    if size is not None and got != size:
        if got > size:
            raise _Skip(f"sent {got:,} bytes, the registry says {size:,}", mismatch=True)
        raise _Retry(f"connection closed after {got:,} of {size:,} bytes")
    bad = []
    if sha256 and h.sha256 != sha256:
        bad.append(f"sha256 {h.sha256}, expected {sha256}")
    if md5 and h.md5 != md5:
        bad.append(f"md5 {h.md5}, expected {md5}")
    if bad:
        return ("resumed:" if resumed else "") + "checksum mismatch: " + "; ".join(bad)
    return h


def _transfer(session, url, part, h: Hashes, have: int, size, bar, policy: Policy,
              deadline: Deadline, meter: _Meter) -> int:
    """Stream the body into ``part`` (appending from ``have``); returns the prefix reused."""
    headers = {"Accept-Encoding": "identity", "User-Agent": USER_AGENT}
    if have:
        headers["Range"] = f"bytes={have}-"
    timeout = (deadline.cap(config.CONNECT_TIMEOUT), deadline.cap(policy.read_timeout))
    meter.start()
    try:
        resp = _get(session, url, headers, timeout)
        with resp:
            have = _answer(resp, url, part, h, have, size, bar, deadline, meter)
    finally:
        meter.stop()
    return have


def _answer(resp, url, part, h: Hashes, have: int, size, bar, deadline, meter) -> int:
    status = resp.status_code
    if status == 429 or status >= 500:
        raise _Retry(f"HTTP {status} {resp.reason}", _retry_after(resp))
    if status == 416 and have:
        _truncate(part)
        raise _Retry(f"HTTP 416 for Range bytes={have}-; starting over")
    if status >= 400:
        raise _Skip(f"HTTP {status} {resp.reason}")
    if status == 206 and have:
        m = _CONTENT_RANGE.match(resp.headers.get("Content-Range", ""))
        if not m or int(m.group(1)) != have:
            _truncate(part)
            cr = resp.headers.get("Content-Range")
            raise _Retry(f"asked for bytes {have}- but got Content-Range {cr!r}; starting over")
    elif status == 200:
        if have:
            log.info("%s ignored the Range request; downloading from byte 0", url)
            have = 0
            h.reset()
            bar.reset(total=size)
    else:
        raise _Skip(f"unexpected HTTP {status} {resp.reason}")
    length = resp.headers.get("Content-Length")
    length = int(length) if length and length.isdigit() else None
    if size is not None and length is not None and have + length != size:
        raise _Skip(f"announces {have + length:,} bytes, the registry says {size:,}",
                    mismatch=True)
    if size is None and length is not None and have + length > config.MAX_FILE_SIZE:
        raise _Skip(f"announces {have + length:,} bytes, more than dlsets accepts for one file "
                    f"({config.MAX_FILE_SIZE:,})", mismatch=True)
    if length is not None:  # refused before a byte is written, the part kept for later
        space.need_disk(part.parent, length, f"{part.name.removesuffix('.part')}: the server "
                        f"announces {have + length:,} bytes",
                        " (or point --cache-dir / DLSETS_CACHE at a disk with room)")
    received = _stream(resp.raw, part, h, have, size, bar, deadline, meter)
    if length is not None and received < length:
        raise _Retry(f"connection closed after {have + received:,} of {have + length:,} bytes")
    return have


def _stream(raw, part: Path, h: Hashes, have: int, size, bar, deadline: Deadline,
            meter: _Meter) -> int:
    received = 0
    limit = (size if size is not None else config.MAX_FILE_SIZE) - have
    # read1 hands over what has arrived (up to CHUNK) instead of waiting for a full CHUNK, so
    # a slow or killed transfer keeps on disk nearly everything it received.
    read = raw.read1 if hasattr(raw, "read1") else raw.read
    feed = _Feeder(h)
    try:
        try:
            f = open(part, "r+b" if have else "wb")
        except FileNotFoundError:
            raise _gone(part) from None
        with f:
            if have:
                f.seek(have)
                f.truncate()
            while True:
                try:
                    data = read(CHUNK, decode_content=False)
                except _NET_ERRORS as exc:
                    raise _Retry(f"transfer interrupted after {have + received:,} bytes: "
                                 f"{_reason(exc)}") from None
                if not data:
                    return received
                f.write(data)
                feed.update(data)
                received += len(data)
                bar.update(len(data))
                meter.add(len(data))
                if received > limit:
                    raise _Skip(f"sent more than the {have + limit:,} bytes expected",
                                mismatch=True)
                slow = meter.too_slow()
                if slow:
                    raise _Skip(slow, leave=True)
                if deadline.passed():
                    raise _Deadline
    except OSError as exc:  # reads are caught above, so this is the disk refusing a write
        raise _write_error(part, exc) from None
    finally:
        feed.close()


def _gone(part: Path) -> DlsetsError:
    return DlsetsError(
        f"the folder {part.parent} was removed while {part.name} was being written (by `dlsets "
        "remove` or another program); nothing was kept. Fetch again."
    )


def _write_error(part: Path, exc: OSError) -> DlsetsError:
    dest = part.with_name(part.name.removesuffix(".part"))
    part.unlink(missing_ok=True)
    return DlsetsError(
        f"writing {part} failed: {exc.strerror or exc} (errno {exc.errno}). The partial download "
        f"was deleted and nothing was written to {dest}. Free some disk space, or point "
        "--cache-dir / DLSETS_CACHE at a disk with room, and fetch again."
    )


def _get(session: requests.Session, url: str, headers: dict, timeout) -> requests.Response:
    """GET following redirects by hand, so an https -> http downgrade can be refused."""
    current = url
    for _ in range(MAX_REDIRECTS + 1):
        try:
            resp = session.get(current, headers=headers, stream=True, timeout=timeout,
                               allow_redirects=False)
        except requests.exceptions.SSLError as exc:
            raise _Skip(f"TLS error: {_reason(exc)}") from None
        except (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema,
                requests.exceptions.InvalidSchema) as exc:
            raise _Skip(f"invalid URL: {exc}") from None  # retrying cannot fix it
        except _NET_ERRORS as exc:
            host = _unresolved_host(exc)
            if host is not None:  # DNS does not heal in seconds: no backoff, next URL now
                raise _Skip(f"cannot resolve {host or urlsplit(current).hostname}: "
                            f"{_reason(exc)} (not retried)") from None
            raise _Retry(_reason(exc)) from None
        if not resp.is_redirect:
            return resp
        target = urljoin(current, resp.headers["Location"])
        resp.close()
        if urlsplit(current).scheme == "https" and urlsplit(target).scheme != "https":
            raise _Skip(f"refused the redirect from {current} to {target}: it would fetch over "
                        "plain http what was asked over https")
        log.debug("redirect %s -> %s", current, target)
        current = target
    raise _Skip(f"more than {MAX_REDIRECTS} redirects")


_NAME_ERRORS = (socket.gaierror,
                getattr(urllib3.exceptions, "NameResolutionError", socket.gaierror))


def _unresolved_host(exc: BaseException) -> str | None:
    """The host name whose lookup failed somewhere inside ``exc`` ("" when it is not said);
    None when no name-resolution failure is in there (a refused connection, a timeout)."""
    todo, seen = [exc], set()
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, _NAME_ERRORS):
            m = re.search(r"Failed to resolve '([^']+)'", str(e))
            return m.group(1) if m else ""
        todo += [e.__cause__, e.__context__, getattr(e, "reason", None),
                 *(a for a in e.args if isinstance(a, BaseException))]
    return None


def _retry_after(resp: requests.Response) -> float | None:
    value = resp.headers.get("Retry-After")
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _truncate(part: Path) -> None:
    try:
        with open(part, "r+b") as f:
            f.truncate(0)
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise _write_error(part, exc) from None


def _reason(exc: BaseException) -> str:
    """A short message for a network exception; requests nests the useful part deep down."""
    text = str(exc)
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return f"connect timed out after {config.CONNECT_TIMEOUT:g} s"
    if isinstance(exc, (requests.exceptions.ReadTimeout, urllib3.exceptions.ReadTimeoutError,
                        TimeoutError)) or "timed out" in text.lower():
        return f"read timed out (no data for {config.read_timeout():g} s; DLSETS_TIMEOUT)"
    m = re.search(r"\[Errno -?\d+\] [^'\")]+", text)
    if m:
        return m.group(0)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
