"""A time budget shared by the steps of one probe."""

from __future__ import annotations

import time


class Deadline:
    """Counts down from ``seconds``; each probe step asks how much time is left."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._end = time.perf_counter() + seconds

    def remaining(self, floor: float = 0.05) -> float:
        """Seconds left, never below ``floor`` (a socket timeout of 0 means non-blocking)."""
        return max(self._end - time.perf_counter(), floor)

    @property
    def expired(self) -> bool:
        return time.perf_counter() >= self._end
