"""When the keepalive pings, and when it declares a peer dead, on a shared grid.

One task pings every connection of a loop. It wakes on a grid of ``step``
seconds rather than once per connection: a ping goes out on the last grid
point at least ``step`` before ``interval`` has passed since the last pong,
and the pong deadline is checked on the first grid point at or after
``timeout`` has passed since the ping. The ping's earliness pays for the
check's lateness, so a dead peer is still declared dead within
``interval + timeout`` of its last pong.
"""

from __future__ import annotations

import math

import attrs

__all__ = ["KeepaliveGrid"]


@attrs.frozen
class KeepaliveGrid:
    """Grid slots (integers) for pings and pong deadlines; times are monotonic seconds."""

    interval: float = attrs.field()
    timeout: float = attrs.field()
    step: float = attrs.field()

    @interval.validator
    @timeout.validator
    @step.validator
    def _positive(self, attribute: attrs.Attribute[float], value: float) -> None:
        if not value > 0:
            raise ValueError(f"{attribute.name} must be > 0, got {value!r}")

    @classmethod
    def for_settings(cls, interval: float, timeout: float, points: int = 20) -> KeepaliveGrid:
        """A grid of ``points`` steps over the shorter of ``interval`` and ``timeout``."""
        return cls(interval, timeout, min(interval, timeout) / points)

    def time_of(self, slot: int) -> float:
        """When ``slot`` comes."""
        return slot * self.step

    def ping_slot(self, answered_at: float, now: float) -> int:
        """The slot of the next ping after a pong (or a start) at ``answered_at``, after ``now``."""
        latest = answered_at + self.interval - self.step
        slot = math.floor(latest / self.step)
        if self.time_of(slot) > latest:  # float rounding: never later than the bound
            slot -= 1
        return max(slot, self._next_after(now))

    def check_slot(self, sent_at: float) -> int:
        """The slot at which a ping sent at ``sent_at`` must have been answered."""
        earliest = sent_at + self.timeout
        slot = math.ceil(earliest / self.step)
        if self.time_of(slot) < earliest:  # float rounding: never before the timeout
            slot += 1
        return slot

    def _next_after(self, now: float) -> int:
        return math.floor(now / self.step) + 1
