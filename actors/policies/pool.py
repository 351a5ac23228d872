"""The idle-manager pool: whether a retired manager may be reused, and for how long it waits."""

from __future__ import annotations

import attrs

__all__ = ["PoolPolicy"]


@attrs.frozen
class PoolPolicy:
    """At most ``size`` idle managers per user (not counted in the quota), each for
    at most ``idle_seconds``; a manager serves at most ``max_uses`` connections
    (0: no limit) before it is stopped instead of pooled."""

    size: int
    idle_seconds: float
    max_uses: int = 0

    def reusable(self, *, served: int, crashed: bool, holds_state: bool) -> bool:
        """True if a manager that has just let go of a connection may serve another.

        Not if its connection ended in a crash (its handler raised while
        serving it), not if anything of that connection is left in it
        (``holds_state``), and not once it has served ``max_uses``
        connections.
        """
        if crashed or holds_state:
            return False
        return self.max_uses == 0 or served < self.max_uses

    def has_room(self, pooled: int, on_the_way: int = 0) -> bool:
        """True if one more manager may join ``pooled`` ones (plus ``on_the_way`` detaching)."""
        return pooled + on_the_way < self.size

    def expired(self, idle_since: float, now: float) -> bool:
        """True when a manager idle since ``idle_since`` has waited long enough: stop it."""
        return now >= self.expires_at(idle_since)  # one rule for both: never an ulp apart

    def expires_at(self, idle_since: float) -> float:
        """When a manager idle since ``idle_since`` expires (:meth:`expired`)."""
        return idle_since + self.idle_seconds
