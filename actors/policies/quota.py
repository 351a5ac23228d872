"""Admission against a user's quota: supersede, sweep first, admit, evict or reject."""

from __future__ import annotations

import enum
import math
from typing import Literal

import attrs

__all__ = ["QuotaPolicy", "Verdict"]


class Verdict(enum.Enum):
    """What to do with a connection asking for a slot."""

    ADMIT = "admit"
    """A slot is free: take it."""
    SUPERSEDE = "supersede"
    """The same isolation key is held: close the old connection (4001), reuse its slot."""
    EVICT = "evict"
    """The quota is full: close the longest-idle connection (4002), then admit."""
    REJECT = "reject"
    """The quota is full: refuse."""


@attrs.frozen
class QuotaPolicy:
    """A user's quota and what happens when it fills up.

    ``proactive_ratio`` is the share of ``limit`` at or above which the
    supervisor sweeps away connections that are no longer live before it
    decides, so that dead connections never cost a live user a slot.
    """

    limit: int = attrs.field(validator=attrs.validators.ge(1))
    proactive_ratio: float = 0.5
    on_full: Literal["reject", "evict_oldest_idle"] = "reject"

    proactive_at: int = attrs.field(init=False)
    """The slot count at or above which admission sweeps first."""

    @proactive_at.default
    def _proactive_at(self) -> int:
        # round first: 100 * 0.07 is 7.000000000000001 in floating point, not 7
        return max(1, math.ceil(round(self.limit * self.proactive_ratio, 9)))

    @property
    def evicts(self) -> bool:
        """True when a full quota evicts the oldest idle connection instead of refusing."""
        return self.on_full == "evict_oldest_idle"

    def may_evict(self, used: int) -> bool:
        """True when :meth:`decide` could answer EVICT at ``used`` slots.

        Only then is a connection to evict worth looking for: the search
        walks every connection of the user, and an admission below the
        quota needs none.
        """
        return self.evicts and used >= self.limit

    def should_sweep(self, used: int) -> bool:
        """True when ``used`` slots call for a sweep before admitting."""
        return used >= self.proactive_at

    def decide(self, used: int, key_held: bool, can_evict: bool = True) -> Verdict:
        """The verdict for a new connection when ``used`` slots are held.

        ``key_held`` says whether the connection's isolation key already holds
        a slot; ``can_evict`` whether any connection could be evicted.
        """
        if key_held:
            return Verdict.SUPERSEDE
        if used < self.limit:
            return Verdict.ADMIT
        if self.evicts and can_evict:
            return Verdict.EVICT
        return Verdict.REJECT
