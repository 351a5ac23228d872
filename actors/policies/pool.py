"""The idle-manager pool: when a retired manager may wait for reuse, and for how long."""

from __future__ import annotations

import attrs

__all__ = ["PoolPolicy"]


@attrs.frozen
class PoolPolicy:
    """At most ``size`` idle managers per user (not counted in the quota), each for
    at most ``idle_seconds``."""

    size: int
    idle_seconds: float

    def has_room(self, pooled: int, on_the_way: int = 0) -> bool:
        """True if one more manager may join ``pooled`` ones (plus ``on_the_way`` detaching)."""
        return pooled + on_the_way < self.size

    def expired(self, idle_since: float, now: float) -> bool:
        """True when a manager idle since ``idle_since`` has waited long enough: stop it."""
        return now >= self.expires_at(idle_since)  # one rule for both: never an ulp apart

    def expires_at(self, idle_since: float) -> float:
        """When a manager idle since ``idle_since`` expires (:meth:`expired`)."""
        return idle_since + self.idle_seconds
