"""Progress bars: tqdm on a terminal, silent when asked or when stderr is not a TTY."""

from __future__ import annotations

import sys
from typing import Any


def enabled(progress: bool | None) -> bool:
    """Resolve a ``progress`` argument: None means 'only on a terminal'."""
    if progress is None:
        return bool(getattr(sys.stderr, "isatty", lambda: False)())
    return bool(progress)


def bar(total: int | None, desc: str, *, progress: bool | None = None, unit: str = "it", **kw: Any):
    """A tqdm bar, disabled (a cheap no-op) unless :func:`enabled` says otherwise."""
    from tqdm.auto import tqdm

    if unit == "B":
        kw.setdefault("unit_scale", True)
        kw.setdefault("unit_divisor", 1024)
    return tqdm(
        total=total,
        desc=desc,
        unit=unit,
        disable=not enabled(progress),
        leave=False,
        dynamic_ncols=True,
        **kw,
    )
