"""A dataset missing from the cache in use but present in another one nearby: ``./cache``, the
repository's cache that the README's set-up fetches into. Said in the not-cached errors."""

from __future__ import annotations

import os
from pathlib import Path

NEARBY = "cache"  # relative to the working folder


def hint(name: str, cache_dir: str | os.PathLike | None = None) -> str:
    """A sentence naming ``./cache`` when it holds ``name``'s files and is not the cache in
    use; "" otherwise."""
    from ..common import config

    try:
        here = Path(NEARBY).resolve()
        if here == config.cache_root(cache_dir) or not any((here / name / "files").iterdir()):
            return ""
    except (OSError, ValueError):
        return ""
    return (f" {name} is in the cache {here} (the README's set-up fetches there), not in the "
            f"cache in use ({config.cache_root(cache_dir)}): use that one with "
            f"DLSETS_CACHE={here}, --cache-dir {here} or cache_dir={str(here)!r}.")


def with_hint(exc: Exception, name: str, cache_dir=None) -> Exception:
    """``exc`` (the same object) with :func:`hint` added to its message, if there is one."""
    extra = hint(name, cache_dir)
    if not extra or not exc.args or not isinstance(exc.args[0], str):
        return exc
    exc.args = (exc.args[0].rstrip() + "\n" + extra.strip(), *exc.args[1:])
    return exc
