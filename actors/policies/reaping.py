"""Which connections are no longer live; whom to evict, shed or abandon; an emergency cleanup's
time."""

from __future__ import annotations

import enum
from collections.abc import Iterable
from typing import Literal

import attrs

__all__ = ["ChildView", "EmergencyCleanup", "ReapPolicy", "ReapReason"]

ChildState = Literal["connecting", "connected", "closing", "disconnected"]


class ReapReason(enum.Enum):
    """Why a connection is no longer live."""

    CLOSED = "closed"
    """Its connection is already gone."""
    KEEPALIVE = "keepalive"
    """No sign of life within the keepalive deadline (ping interval + timeout)."""
    IDLE = "idle"
    """No message either way for longer than the idle timeout."""


@attrs.frozen
class ChildView:
    """What the policy needs to know of one supervised connection.

    ``last_seen`` is the last keepalive sign of life (a pong or a frame);
    ``None`` where the connection does not report keepalive, and then the
    keepalive rule does not apply to it.
    """

    websocket_id: str
    state: ChildState
    last_activity: float
    last_seen: float | None = None


@attrs.frozen
class ReapPolicy:
    """The rules for reaping, evicting and shedding; times in seconds."""

    idle_timeout: float
    keepalive_deadline: float
    cleanup_timeout: float

    def not_live(self, child: ChildView, now: float) -> ReapReason | None:
        """Why ``child`` is no longer live, or None if it is."""
        if child.state == "disconnected":
            return ReapReason.CLOSED
        if child.last_seen is not None and now - child.last_seen > self.keepalive_deadline:
            return ReapReason.KEEPALIVE
        if now - child.last_activity > self.idle_timeout:
            return ReapReason.IDLE
        return None

    def sweep(self, children: Iterable[ChildView], now: float) -> list[tuple[str, ReapReason]]:
        """Every child that is no longer live, with the reason."""
        found = ((child.websocket_id, self.not_live(child, now)) for child in children)
        return [(ws_id, reason) for ws_id, reason in found if reason is not None]

    def next_due(self, children: Iterable[ChildView], now: float) -> float:
        """The earliest time at which a sweep could find one of ``children`` not live.

        Times only move forward (``last_activity`` and ``last_seen`` only
        grow, a new child starts at its admission), and a child that starts
        reporting keepalive does so at ``now`` or later: so no child, present
        or future, can be reaped by a sweep before this. A sweep may be
        skipped until then without changing what it would find.
        """
        due = now + min(self.idle_timeout, self.keepalive_deadline)
        for child in children:
            due = min(due, child.last_activity + self.idle_timeout)
            if child.last_seen is not None:
                due = min(due, child.last_seen + self.keepalive_deadline)
        return due

    def is_overdue(self, since: float, now: float) -> bool:
        """True when a close or stop started at ``since`` has taken too long: abandon it."""
        return now >= self.overdue_at(since)  # one rule for both: never an ulp apart

    def overdue_at(self, since: float) -> float:
        """When a close or stop started at ``since`` becomes overdue (:meth:`is_overdue`)."""
        return since + self.cleanup_timeout

    @staticmethod
    def oldest_idle(children: Iterable[ChildView]) -> str | None:
        """The connected child idle the longest: the one to evict."""
        live = [child for child in children if child.state == "connected"]
        if not live:
            return None
        return min(live, key=lambda child: child.last_activity).websocket_id

    @staticmethod
    def shed(children: Iterable[ChildView], now: float, keep: int, min_idle: float) -> list[str]:
        """Longest-idle children to close, idle at least ``min_idle``, until ``keep`` remain."""
        live = sorted(
            (child for child in children if child.state == "connected"),
            key=lambda child: child.last_activity,
        )
        excess = max(0, len(live) - keep)
        idle = [child.websocket_id for child in live if now - child.last_activity >= min_idle]
        return idle[:excess]


class EmergencyCleanup:
    """One user's emergency cleanup, timed from its start to the last connection it let go.

    The root asks a user's supervisor for one when the user (or the node)
    reaches critical (reap every connection no longer live) or emergency
    (shed the longest idle). It starts when the root decides it
    (``started_at``: a supervisor that gets to it late makes it slow), and
    ends once every connection it reaped is let go: its slot freed and its
    close confirmed, or abandoned after the cleanup timeout. A request
    that comes while one is under way joins it: one cleanup, timed from
    the first start. This is the seed's "emergency cleanup takes > 30 s",
    which a per-connection time, capped by the abandonment at the cleanup
    timeout, can never show.

    Pure: the supervisor passes the times, in its own turn.
    """

    def __init__(self) -> None:
        self._started: float | None = None
        self._pending: set[str] = set()

    @property
    def running(self) -> bool:
        """True between :meth:`begin` and the end it reports."""
        return self._started is not None

    @property
    def pending(self) -> int:
        """Connections reaped by the cleanup under way and not yet let go."""
        return len(self._pending)

    def begin(self, started_at: float, reaped: Iterable[str]) -> None:
        """A cleanup was asked for at ``started_at`` and reaped ``reaped`` (websocket ids)."""
        if self._started is None or started_at < self._started:
            self._started = started_at
        self._pending.update(reaped)

    def let_go(self, websocket_id: str, now: float) -> float | None:
        """A connection was let go; the cleanup's wall time if it was the last one, else None."""
        if self._started is None or websocket_id not in self._pending:
            return None
        self._pending.discard(websocket_id)
        return self.settle(now)

    def settle(self, now: float) -> float | None:
        """The cleanup's wall time if nothing it reaped is still pending (it ends), else None."""
        if self._started is None or self._pending:
            return None
        started, self._started = self._started, None
        return max(0.0, now - started)
