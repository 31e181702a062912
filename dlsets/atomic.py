"""Atomic writes: a temporary file beside the destination, renamed over it on success."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def replacing(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; it replaces ``path`` if the block succeeds and is
    removed otherwise, so ``path`` is always either the old file or the whole new one."""
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    # pid and thread: two writers of the same path, in processes or threads, never share a temp
    tmp = final.with_name(f".{final.name}.{os.getpid()}-{threading.get_ident()}.tmp")
    try:
        yield tmp
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)
