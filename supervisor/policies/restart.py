"""Restart or reap: OTP's restart types and restart intensity, for crashed actors."""

from __future__ import annotations

import collections
from typing import Literal

import attrs

__all__ = ["RestartIntensity", "RestartType", "should_restart"]

RestartType = Literal["permanent", "transient", "temporary"]
"""As in an OTP child spec: ``permanent`` always restarts, ``transient`` only
after an abnormal exit (a crash), ``temporary`` never. A manager's normal exit
is its connection closing, after which nothing is left to restart, so for
managers ``permanent`` and ``transient`` behave alike."""


def should_restart(restart_type: RestartType, *, crashed: bool) -> bool:
    """Whether a child of ``restart_type`` that exited (crashed or not) is restarted."""
    if restart_type == "permanent":
        return True
    if restart_type == "transient":
        return crashed
    return False


@attrs.define
class RestartIntensity:
    """At most ``max_restarts`` restarts in any ``within_seconds``; then give up.

    Mutable: one instance per supervised child; :meth:`allow` records the
    restart it allows.
    """

    max_restarts: int
    within_seconds: float
    _times: collections.deque[float] = attrs.field(factory=collections.deque, init=False)

    def allow(self, now: float) -> bool:
        """Record a crash at ``now``; True if a restart is still within the intensity."""
        while self._times and now - self._times[0] >= self.within_seconds:
            self._times.popleft()
        if len(self._times) >= self.max_restarts:
            return False
        self._times.append(now)
        return True

    @property
    def recent(self) -> int:
        """Restarts counted in the current window (not expired by time yet)."""
        return len(self._times)
