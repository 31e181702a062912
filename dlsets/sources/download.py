"""Downloading one file from its mirrors: which URL next, when to retry, when to leave a
source; each request streams to ``<file>.part`` (:mod:`dlsets.sources.http_transfer`), hashed as
bytes arrive, renamed into place once verified.

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

import logging
import os
import random
import time
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit

import requests

from ..common import config, progress
from ..common.deadline import Deadline
from ..errors import ChecksumError, DeadlineError, DlsetsError, DownloadError, OptionError

# The hashes, the rate policy and the single HTTP request live in their own modules; the names
# that were defined here are re-exported, so ``download.X`` keeps working for every caller.
from .download_hashes import CHUNK as CHUNK
from .download_hashes import Hashes, _size
from .download_hashes import _feed as _feed
from .download_hashes import hash_file as hash_file
from .download_rate import Policy, _Meter
from .http_transfer import MAX_REDIRECTS as MAX_REDIRECTS
from .http_transfer import USER_AGENT as USER_AGENT
from .http_transfer import _attempt, _Deadline, _Retry, _Skip
from .http_transfer import _reason as _reason
from .http_transfer import _unresolved_host as _unresolved_host

log = logging.getLogger("dlsets")

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


def retry_base() -> float:
    """First backoff delay in seconds: ``$DLSETS_RETRY_BASE`` (default 1); doubles per retry."""
    return config.retry_base()


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
