"""Settings read from arguments and environment variables, resolved at call time."""

from __future__ import annotations

import math
import os
from pathlib import Path
from urllib.parse import urlsplit

from ..errors import OptionError

DEFAULT_READ_TIMEOUT = 60.0
CONNECT_TIMEOUT = 15.0
DEFAULT_MIN_RATE = 10_000.0
DEFAULT_RATE_WINDOW = 60.0
MAX_SECONDS = 86_400.0
"""Longest timeout or window accepted (a day): longer ones are typos or infinities."""
MAX_DEADLINE = 30 * 86_400.0
MAX_FILE_SIZE = 1 << 44
"""Largest file a registry may describe, and a download of unknown size may grow to (16 TiB)."""


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """The cache folder: ``cache_dir``, else ``$DLSETS_CACHE``, else the user cache folder.

    The user cache folder is ``$XDG_CACHE_HOME/dlsets``, else ``~/.cache/dlsets``.
    """
    if cache_dir is not None:
        if "\0" in os.fspath(cache_dir):
            raise OptionError(f"cache_dir={os.fspath(cache_dir)!r} contains a NUL character")
        return Path(cache_dir).expanduser().resolve()
    env = os.environ.get("DLSETS_CACHE")
    if env:
        return Path(env).expanduser().resolve()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return (base / "dlsets").resolve()


def number(var: str, default: float | None, *, low: float, high: float,
           zero_ok: bool = False, unit: str = "seconds") -> float | None:
    """The number in ``$var`` (``default`` when unset or empty), checked at the boundary: finite,
    above ``low`` (or equal to it when ``zero_ok``) and at most ``high``; else OptionError."""
    raw = os.environ.get(var, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise OptionError(f"{var}={raw!r} is not a number of {unit}") from None
    floor = f"{'at least' if zero_ok else 'more than'} {low:.10g}"
    if not math.isfinite(value) or value > high or value < low or (value == low and not zero_ok):
        raise OptionError(f"{var}={raw!r}: give a number of {unit} {floor} and at most "
                          f"{high:,.0f}")
    return value


def read_timeout() -> float:
    """Read timeout in seconds from ``$DLSETS_TIMEOUT`` (default 60, at most a day)."""
    return number("DLSETS_TIMEOUT", DEFAULT_READ_TIMEOUT, low=0, high=MAX_SECONDS)


def retry_base() -> float:
    """First backoff delay in seconds from ``$DLSETS_RETRY_BASE`` (default 1, at most 30)."""
    return number("DLSETS_RETRY_BASE", 1.0, low=0, high=30, zero_ok=True)


def min_rate() -> float:
    """Bytes per second a source must average over :func:`rate_window` to be kept, from
    ``$DLSETS_MIN_RATE`` (default 10,000; 0 keeps any source that sends something)."""
    return number("DLSETS_MIN_RATE", DEFAULT_MIN_RATE, low=0, high=1e12, zero_ok=True,
                  unit="bytes per second")


def rate_window() -> float:
    """Seconds of transfer over which :func:`min_rate` is averaged, from
    ``$DLSETS_RATE_WINDOW`` (default 60)."""
    return number("DLSETS_RATE_WINDOW", DEFAULT_RATE_WINDOW, low=0, high=MAX_SECONDS)


def deadline(seconds: float | None = None) -> float | None:
    """Seconds a whole fetch may take: ``seconds``, else ``$DLSETS_DEADLINE``; None: no limit."""
    if seconds is None:
        return number("DLSETS_DEADLINE", None, low=0, high=MAX_DEADLINE)
    if (isinstance(seconds, bool) or not isinstance(seconds, (int, float))
            or not math.isfinite(seconds) or not 0 < seconds <= MAX_DEADLINE):
        raise OptionError(f"deadline={seconds!r}: give a number of seconds more than 0 and at "
                          f"most {MAX_DEADLINE:,.0f}")
    return float(seconds)


def url_problem(url: object) -> str | None:
    """Why ``url`` cannot be downloaded from (not http(s), unparsable, no host, a bad port);
    None when it can. Checked where a URL is given, so none fails deep in a download."""
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        return "is not an http(s) URL"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 -- parsing the port is what can fail
    except ValueError as exc:
        return f"cannot be parsed ({exc})"
    if not parts.hostname:
        return "names no host"
    if "[" in parts.netloc or "]" in parts.netloc:  # older Pythons let a bad IPv6 literal by
        import ipaddress

        try:
            ipaddress.IPv6Address(parts.hostname)
        except ValueError:
            return f"cannot be parsed (the IPv6 address [{parts.hostname}] is not one)"
    return None


def env_mirrors() -> list[str]:
    """Base URLs from ``$DLSETS_MIRROR`` (space-separated), tried before the registry's own;
    OptionError naming one that cannot be a base URL."""
    mirrors = os.environ.get("DLSETS_MIRROR", "").split()
    for m in mirrors:
        why = url_problem(m)
        if why:
            raise OptionError(f"DLSETS_MIRROR {m!r} {why}; give base URLs like "
                              "https://host/path/ (the file name is appended), or unset it")
    return mirrors


def offline() -> bool:
    """True when ``$DLSETS_OFFLINE`` forbids the network."""
    return os.environ.get("DLSETS_OFFLINE", "").strip().lower() not in ("", "0", "false", "no")


def registry_paths() -> list[Path]:
    """User registry files named by ``$DLSETS_REGISTRY`` (joined by ``os.pathsep``)."""
    raw = os.environ.get("DLSETS_REGISTRY", "")
    return [Path(p).expanduser() for p in raw.split(os.pathsep) if p.strip()]
