"""Time, injectable: one clock for the whole supervision tree.

Every decision about time (idle timeouts, restart intensity, abandonment,
pool expiry, release latency) reads :meth:`Clock.monotonic`; :meth:`Clock.wall`
is only for display in state dumps. Unit tests pass a :class:`ManualClock` and
move time with :meth:`ManualClock.advance` instead of sleeping.
"""

from __future__ import annotations

import threading
import time
from typing import Protocol

__all__ = ["Clock", "ManualClock", "SystemClock"]


class Clock(Protocol):
    """A source of time; safe to call from any thread."""

    def monotonic(self) -> float:
        """Seconds on a clock that never goes backwards."""
        ...

    def wall(self) -> float:
        """Seconds since the epoch, for display only."""
        ...


class SystemClock:
    """The real clock: :func:`time.monotonic` and :func:`time.time` themselves.

    The functions, not methods that call them: a frame reads the clock a
    few times on its way, and a Python call costs more than the reading.
    """

    monotonic = staticmethod(time.monotonic)
    wall = staticmethod(time.time)


class ManualClock:
    """A clock that moves only when told to; for unit tests."""

    def __init__(self, start: float = 1_000.0, wall_offset: float = 1_700_000_000.0) -> None:
        self._now = start
        self._wall_offset = wall_offset
        self._lock = threading.Lock()

    def monotonic(self) -> float:
        with self._lock:
            return self._now

    def wall(self) -> float:
        return self.monotonic() + self._wall_offset

    def advance(self, seconds: float) -> float:
        """Move time forward by ``seconds`` and return the new time."""
        if seconds < 0:
            raise ValueError("a clock does not go backwards")
        with self._lock:
            self._now += seconds
            return self._now
