"""Progress: a tqdm bar on a terminal and a tqdm widget in a Jupyter kernel; elsewhere (logs,
CI), short notices for work that takes a while; nothing when asked to be quiet."""

from __future__ import annotations

import importlib.util
import logging
import sys
import time
from typing import Any

log = logging.getLogger("dlsets")

NOTICE_AFTER = 5.0  # seconds of work before the first notice off a terminal
NOTICE_EVERY = 60.0  # seconds between notices after that


def enabled(progress: bool | None) -> bool:
    """Resolve a ``progress`` argument: None means 'on a terminal or in a Jupyter kernel'."""
    if progress is None:
        return bool(getattr(sys.stderr, "isatty", lambda: False)()) or in_notebook()
    return bool(progress)


def in_notebook() -> bool:
    """Whether this process is a Jupyter kernel (where tqdm.auto draws a widget)."""
    ipython = sys.modules.get("IPython")  # never imported here: only if the kernel has it
    try:
        shell = ipython.get_ipython() if ipython is not None else None
    except Exception:  # an IPython too broken to ask is no notebook to draw in
        return False
    return type(shell).__name__ == "ZMQInteractiveShell"


def bar(total: int | None, desc: str, *, progress: bool | None = None, unit: str = "it", **kw: Any):
    """A tqdm bar on a terminal (or with ``progress=True``); with ``progress=None`` off a
    terminal, a :class:`Notice` that logs a line now and then once the work has taken
    NOTICE_AFTER seconds; with ``progress=False``, a silent no-op bar."""
    if progress is None and not enabled(None):
        return Notice(total, desc, unit)
    if in_notebook() and importlib.util.find_spec("ipywidgets") is None:
        from tqdm import tqdm  # text in the cell: tqdm.auto would warn and draw nothing
    else:
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


class Notice:
    """The bar's interface (``update``, ``reset``, ``close``, a context manager) as log lines
    at warning level: none for work that ends within NOTICE_AFTER seconds, then one every
    NOTICE_EVERY seconds, and one when it ends."""

    def __init__(self, total: int | None, desc: str, unit: str = "it") -> None:
        self.total, self.desc, self.unit = total, desc, unit
        self.n = 0
        self._start = time.monotonic()
        self._next = self._start + NOTICE_AFTER
        self._said = False

    def _amount(self) -> str:
        done = _human(self.n, self.unit)
        if self.total:
            return f"{done} of {_human(self.total, self.unit)} ({100 * self.n // self.total}%)"
        return done

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.monotonic()
        if now >= self._next:
            log.warning("%s: %s after %.0f s", self.desc, self._amount(), now - self._start)
            self._said = True
            self._next = now + NOTICE_EVERY

    def reset(self, total: int | None = None) -> None:
        self.n = 0
        if total is not None:
            self.total = total

    def close(self, how: str = "ended") -> None:
        if self._said:
            log.warning("%s: %s after %.0f s (%s)", self.desc, how,
                        time.monotonic() - self._start, _human(self.n, self.unit))
            self._said = False

    def __enter__(self) -> Notice:
        return self

    def __exit__(self, kind, exc, tb) -> None:
        self.close("stopped" if kind is not None else "done")


def _human(n: float, unit: str) -> str:
    if unit != "B":
        return f"{int(n):,} {unit}"
    for prefix in ("B", "KB", "MB", "GB"):
        if n < 1000 or prefix == "GB":
            return f"{n:.0f} {prefix}" if prefix == "B" else f"{n:.1f} {prefix}"
        n /= 1000
    return f"{n:.1f} GB"
