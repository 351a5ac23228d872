"""State dumps as plain JSON-ready data (dicts, lists, strings, numbers)."""

from __future__ import annotations

from typing import Any

from actors.clock import Clock
from actors.user.children import Child, Children

__all__ = ["manager_snapshot", "user_snapshot"]


def manager_snapshot(child: Child, clock: Clock) -> dict[str, Any]:
    """One connection: its ids, state and counters; times are epoch seconds."""
    ctx, stats = child.context, child.stats
    wall_offset = clock.wall() - clock.monotonic()
    return {
        "isolation_key": ctx.isolation_key,
        "websocket_id": ctx.websocket_id,
        "thread_id": ctx.thread_id,
        "run_id": ctx.run_id,
        "state": child.state,
        "holds_slot": child.holds_slot,
        "connected_at": round(stats.connected_at, 3),
        "last_activity": round(stats.last_activity + wall_offset, 3),
        "messages_in": stats.messages_in,
        "messages_out": stats.messages_out,
        "outbound_queued": stats.outbound_queued,
        "restarts": stats.restarts,
    }


def user_snapshot(
    user_id: str, children: Children, limit: int, restarts: int, clock: Clock
) -> dict[str, Any]:
    """One user: usage, pool and every manager. The root fills in ``level``."""
    return {
        "user_id": user_id,
        "used": children.used,
        "limit": limit,
        "level": "ok",
        "pool_idle": len(children.pool),
        "restarts": restarts,
        "managers": [manager_snapshot(child, clock) for child in children.by_id.values()],
    }
