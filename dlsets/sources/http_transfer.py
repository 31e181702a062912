"""One HTTP request of a download: a GET (redirects followed by hand) whose body is streamed into
``<file>.part``, appended with ``Range`` when part of it is there, hashed as it arrives.

Each try ends in a complete, hashed part file or one of the outcomes below, which the mirror
and retry loop in :mod:`dlsets.sources.download` acts on: :class:`_Retry` (the same URL again,
after a backoff), :class:`_Skip` (the next URL) or :class:`_Deadline`.
"""

from __future__ import annotations

import logging
import re
import socket
import time
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import requests
import urllib3

from ..common import config
from ..common.deadline import Deadline
from ..errors import DlsetsError
from ..store import space
from .download_hashes import CHUNK, Hashes, _feed, _Feeder, _size
from .download_rate import Policy, _Meter

log = logging.getLogger("dlsets")

MAX_REDIRECTS = 10
USER_AGENT = f"dlsets python-requests/{requests.__version__}"

_CONTENT_RANGE = re.compile(r"^\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*$")
# Everything a broken connection can raise while the body is read.
_NET_ERRORS = (requests.RequestException, urllib3.exceptions.HTTPError, OSError)

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
