"""An overall time limit for a fetch and every wait inside it (downloads, backoff, locks).

Kept apart from :mod:`dlsets.sources.download` so that code holding a deadline does not import
requests.
"""

from __future__ import annotations

import time


class Deadline:
    """An overall time limit (``seconds`` from now; None: none) for a fetch and its waits."""

    def __init__(self, seconds: float | None = None):
        self.seconds = seconds
        self._at = None if seconds is None else time.monotonic() + seconds

    def left(self) -> float:
        return float("inf") if self._at is None else self._at - time.monotonic()

    def passed(self) -> bool:
        return self.left() <= 0

    def cap(self, seconds: float) -> float:
        """``seconds``, or what is left of the deadline if that is less (never below 1 ms)."""
        return max(min(seconds, self.left()), 0.001)

    def describe(self) -> str:
        return (f"the deadline of {round(self.seconds, 2):g} s (deadline= / --deadline / "
                "DLSETS_DEADLINE)")
