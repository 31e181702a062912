"""Settings read from arguments and environment variables, resolved at call time."""

from __future__ import annotations

import os
from pathlib import Path

from .errors import OptionError

DEFAULT_READ_TIMEOUT = 60.0
CONNECT_TIMEOUT = 15.0


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """The cache folder: ``cache_dir``, else ``$DLSETS_CACHE``, else the user cache folder.

    The user cache folder is ``$XDG_CACHE_HOME/dlsets``, else ``~/.cache/dlsets``.
    """
    if cache_dir is not None:
        return Path(cache_dir).expanduser().resolve()
    env = os.environ.get("DLSETS_CACHE")
    if env:
        return Path(env).expanduser().resolve()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return (base / "dlsets").resolve()


def read_timeout() -> float:
    """Read timeout in seconds from ``$DLSETS_TIMEOUT`` (default 60)."""
    raw = os.environ.get("DLSETS_TIMEOUT")
    if not raw:
        return DEFAULT_READ_TIMEOUT
    try:
        value = float(raw)
    except ValueError:
        raise OptionError(f"DLSETS_TIMEOUT={raw!r} is not a number of seconds") from None
    if value <= 0:
        raise OptionError(f"DLSETS_TIMEOUT={raw!r} must be a positive number of seconds")
    return value


def env_mirrors() -> list[str]:
    """Base URLs from ``$DLSETS_MIRROR`` (space-separated), tried before the registry's own."""
    return os.environ.get("DLSETS_MIRROR", "").split()


def offline() -> bool:
    """True when ``$DLSETS_OFFLINE`` forbids the network."""
    return os.environ.get("DLSETS_OFFLINE", "").strip().lower() not in ("", "0", "false", "no")


def registry_paths() -> list[Path]:
    """User registry files named by ``$DLSETS_REGISTRY`` (joined by ``os.pathsep``)."""
    raw = os.environ.get("DLSETS_REGISTRY", "")
    return [Path(p).expanduser() for p in raw.split(os.pathsep) if p.strip()]
