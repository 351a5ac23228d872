"""A user supervisor's books: its children, its idle pool, managers on their way out.

Plain data with no threads; the supervisor actor is the only one to touch it.
"""

from __future__ import annotations

import collections
from typing import Any

import attrs
import pykka

from actors.context import UserExecutionContext
from actors.handle import ConnectionHandle
from actors.observer import CleanupReason
from actors.policies.reaping import ChildState, ChildView
from actors.policies.restart import RestartIntensity
from actors.ports import ManagerStats, Port

__all__ = ["Child", "Children"]

_RETIRED_MEMORY = 1024


@attrs.define
class Child:
    """One supervised connection.

    ``holds_slot`` is False once its slot has been freed (or handed to a
    superseding connection) while the connection is still closing.
    """

    context: UserExecutionContext
    port: Port
    handle: ConnectionHandle
    stats: ManagerStats
    manager: pykka.ActorRef[Any] | None
    intensity: RestartIntensity
    state: ChildState = "connected"
    holds_slot: bool = True
    closing_since: float | None = None
    close_reason: CleanupReason | None = None
    held_frames: list[Any] = attrs.Factory(list)
    """Frames that arrived while the manager was dead, for its restart."""

    def view(self) -> ChildView:
        """What the reaping policy needs to know of this child."""
        return ChildView(
            self.context.websocket_id, self.state, self.stats.last_activity, self.stats.last_seen
        )


@attrs.define
class Children:
    """Every child by websocket id, slot holders by isolation key, managers by urn."""

    by_id: dict[str, Child] = attrs.Factory(dict)
    by_key: dict[str, str] = attrs.Factory(dict)
    pool: collections.deque[tuple[pykka.ActorRef[Any], float]] = attrs.Factory(collections.deque)
    detaching: dict[str, tuple[pykka.ActorRef[Any], float]] = attrs.Factory(dict)
    stopping: dict[str, tuple[pykka.ActorRef[Any], float]] = attrs.Factory(dict)
    closing_ids: dict[str, None] = attrs.Factory(dict)
    """The children whose close is under way, in the order they began closing."""
    retired: collections.deque[str] = attrs.Factory(
        lambda: collections.deque(maxlen=_RETIRED_MEMORY)
    )

    def add(self, child: Child) -> None:
        """Register a child that holds a slot under its isolation key."""
        self.by_id[child.context.websocket_id] = child
        self.by_key[child.context.isolation_key] = child.context.websocket_id

    def holder(self, isolation_key: str) -> Child | None:
        """The child holding the slot of ``isolation_key``, if any."""
        websocket_id = self.by_key.get(isolation_key)
        return None if websocket_id is None else self.by_id.get(websocket_id)

    def drop_key(self, child: Child) -> None:
        """Forget ``child`` as the holder of its key (if it still is)."""
        key = child.context.isolation_key
        if self.by_key.get(key) == child.context.websocket_id:
            del self.by_key[key]

    def mark_closing(self, child: Child, now: float) -> None:
        """``child``'s close has begun at ``now``."""
        child.state = "closing"
        child.closing_since = now
        self.closing_ids[child.context.websocket_id] = None

    def remove(self, child: Child) -> None:
        """Forget ``child`` entirely, remembering its id for late messages."""
        self.drop_key(child)
        self.by_id.pop(child.context.websocket_id, None)
        self.closing_ids.pop(child.context.websocket_id, None)
        self.retired.append(child.context.websocket_id)

    def connected(self) -> list[Child]:
        """Children whose connection is live (not closing)."""
        return [child for child in self.by_id.values() if child.state == "connected"]

    def closing(self) -> list[Child]:
        """Children whose close is under way (without walking the others)."""
        return [self.by_id[websocket_id] for websocket_id in self.closing_ids]

    @property
    def used(self) -> int:
        """Slots held by this user's children."""
        return len(self.by_key)

    def managers(self) -> list[pykka.ActorRef[Any]]:
        """Every manager ref known, serving, pooled or on its way out."""
        serving = [child.manager for child in self.by_id.values() if child.manager is not None]
        pooled = [ref for ref, _ in self.pool]
        leaving = [ref for ref, _ in (*self.detaching.values(), *self.stopping.values())]
        return serving + pooled + leaving
