"""How long dlsets stays with one source: the :class:`Policy` read from the DLSETS_* settings,
and the meter that measures a source's rate against it.

:mod:`dlsets.sources.download` re-exports these names (their first home).
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass

from ..common import config


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
