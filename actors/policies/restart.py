"""Restart or reap: OTP's restart types and restart intensity, for crashed actors."""

from __future__ import annotations

import collections

import attrs

from actors.settings import RestartType

__all__ = ["RestartIntensity", "should_restart"]


def should_restart(restart_type: RestartType, *, crashed: bool) -> bool:
    """Whether a child of ``restart_type`` that exited (crashed or not) is restarted."""
    if restart_type == "permanent":
        return True
    if restart_type == "transient":
        return crashed
    return False


@attrs.define
class RestartIntensity:
    """OTP's restart intensity: at most ``intensity`` restarts in any ``period`` seconds.

    Beyond that the supervisor gives up on the child (``[restart]
    max_restarts`` and ``within_seconds`` in the config). Mutable: one
    instance per supervised child; :meth:`allow` records the restart it
    allows.
    """

    intensity: int
    period: float
    _times: collections.deque[float] = attrs.field(factory=collections.deque, init=False)

    def allow(self, now: float) -> bool:
        """Record a crash at ``now``; True if a restart is still within the intensity."""
        while self._times and now - self._times[0] >= self.period:
            self._times.popleft()
        if len(self._times) >= self.intensity:
            return False
        self._times.append(now)
        return True

    @property
    def recent(self) -> int:
        """Restarts counted in the current window (not expired by time yet)."""
        return len(self._times)
