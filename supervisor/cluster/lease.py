"""Leases on a shared ledger: which slots go after a partition, and what to do without Redis.

Pure: no I/O, no clock. :mod:`supervisor.cluster.ledger` carries the data to
and from Redis and asks these classes what to do with it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

import attrs

__all__ = ["LeasePolicy", "SlotRecord", "beyond_quota"]


@attrs.frozen
class SlotRecord:
    """One slot as the shared ledger holds it."""

    key: str
    """The isolation key (``user_id:thread_id``)."""
    node_id: str
    """The node whose connection holds the slot."""
    websocket_id: str
    acquired_ms: int
    """When the slot was taken, in milliseconds (the Redis server's clock, or
    the node's wall clock for a slot taken while Redis was unreachable)."""


def beyond_quota(slots: Iterable[SlotRecord], limit: int) -> list[SlotRecord]:
    """The slots a user must give up to be back within ``limit``.

    The rule after Redis comes back from an outage during which nodes
    admitted on their own counts: the ``limit`` oldest slots stay (by
    acquisition time, then isolation key, so every node computes the same
    answer); every newer one goes, newest last in the list.
    """
    ordered = sorted(slots, key=lambda slot: (slot.acquired_ms, slot.key))
    return ordered[limit:]


@attrs.frozen
class LeasePolicy:
    """Lease timing and the behaviour while the shared ledger is unreachable."""

    ttl: float
    """Seconds a slot lives without renewal."""
    renew_interval: float
    on_unavailable: Literal["fail_open", "fail_closed"] = "fail_open"

    def __attrs_post_init__(self) -> None:
        if not 0 < self.renew_interval * 2 <= self.ttl:
            raise ValueError("a lease must survive one missed renewal: renew_interval*2 <= ttl")

    @property
    def ttl_ms(self) -> int:
        """The lease in whole milliseconds, as Redis takes it."""
        return max(1, round(self.ttl * 1000))

    @property
    def admits_while_down(self) -> bool:
        """True when a node admits on its own count while the ledger is unreachable."""
        return self.on_unavailable == "fail_open"
