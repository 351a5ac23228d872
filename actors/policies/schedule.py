"""When the root monitor sweeps in the background, and when it stops an empty supervisor."""

from __future__ import annotations

import attrs

__all__ = ["CleanupSchedule"]


@attrs.frozen
class CleanupSchedule:
    """The root's timers, as rules on times it passes in (seconds, monotonic)."""

    background_interval: float
    empty_supervisor_ttl: float

    def background_due(self, last: float, now: float) -> bool:
        """True when a background sweep is due, the last one having run at ``last``."""
        return now - last >= self.background_interval

    def next_background(self, last: float) -> float:
        """When the background sweep after the one at ``last`` is due."""
        return last + self.background_interval

    @staticmethod
    def is_empty(used: int, admits_seen: int, admits_sent: int) -> bool:
        """True when a supervisor holds no slot and no admission is on its way to it.

        Its pooled managers do not keep it: a user with no connection is
        forgotten ``empty_supervisor_ttl`` after its last one closed, and
        retiring the supervisor stops its pool with it.
        """
        return used == 0 and admits_seen == admits_sent

    def retire(self, empty_since: float, now: float) -> bool:
        """True when a supervisor empty since ``empty_since`` should be stopped."""
        return now - empty_since >= self.empty_supervisor_ttl

    def retire_at(self, empty_since: float) -> float:
        """When a supervisor empty since ``empty_since`` is to be stopped."""
        return empty_since + self.empty_supervisor_ttl
