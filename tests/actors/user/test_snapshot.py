"""State dumps: a user's usage, pool and managers, as plain JSON-ready data."""

from __future__ import annotations

import json
from typing import Any, cast

import pykka

from actors.clock import ManualClock
from actors.context import UserExecutionContext
from actors.handle import ConnectionHandle
from actors.policies.restart import RestartIntensity
from actors.ports import ManagerStats, QueuePort
from actors.user.children import Child, Children
from actors.user.snapshot import manager_snapshot, user_snapshot

MANAGER_FIELDS = {
    "isolation_key",
    "websocket_id",
    "thread_id",
    "run_id",
    "state",
    "holds_slot",
    "connected_at",
    "last_activity",
    "messages_in",
    "messages_out",
    "outbound_queued",
    "restarts",
}


def a_child(stats: ManagerStats) -> Child:
    return Child(
        UserExecutionContext.from_websocket_request("alice"),
        QueuePort(),
        cast("ConnectionHandle", None),
        stats,
        None,
        RestartIntensity(3, 10.0),
    )


def test_a_managers_dump_has_its_ids_state_and_counters() -> None:
    clock = ManualClock(start=1_000.0, wall_offset=1_700_000_000.0)
    stats = ManagerStats(connected_at=1_700_000_123.45678, last_activity=990.25)
    stats.messages_in, stats.messages_out, stats.outbound_queued, stats.restarts = 3, 4, 1, 2
    child = a_child(stats)
    child.holds_slot = False
    child.state = "closing"
    dump = manager_snapshot(child, clock)
    assert set(dump) == MANAGER_FIELDS
    ctx = child.context
    assert (dump["isolation_key"], dump["websocket_id"]) == (ctx.isolation_key, ctx.websocket_id)
    assert (dump["thread_id"], dump["run_id"]) == (ctx.thread_id, ctx.run_id)
    assert (dump["state"], dump["holds_slot"]) == ("closing", False)
    assert (dump["messages_in"], dump["messages_out"], dump["outbound_queued"]) == (3, 4, 1)
    assert dump["restarts"] == 2


def test_a_managers_times_are_epoch_seconds_to_the_millisecond() -> None:
    clock = ManualClock(start=1_000.0, wall_offset=1_700_000_000.0)
    stats = ManagerStats(connected_at=1_700_000_123.45678, last_activity=990.25)
    dump = manager_snapshot(a_child(stats), clock)
    assert dump["connected_at"] == 1_700_000_123.457  # already wall time
    assert dump["last_activity"] == 990.25 + 1_700_000_000.0  # monotonic, moved to the wall
    clock.advance(50.0)
    assert manager_snapshot(a_child(stats), clock)["last_activity"] == dump["last_activity"]


def test_a_users_dump_counts_the_slots_held_and_lists_every_manager_still_known() -> None:
    clock = ManualClock()
    children = Children()
    holding, closing = (a_child(ManagerStats(0.0, 1_000.0)) for _ in range(2))
    for child in (holding, closing):
        children.add(child)
    children.drop_key(closing)  # its slot already freed, its close still under way
    children.mark_closing(closing, 1_000.0)
    children.pool.append((cast("pykka.ActorRef[Any]", "pooled"), 1_000.0))
    dump = user_snapshot("alice", children, limit=5, restarts=7, clock=clock)
    assert {k: v for k, v in dump.items() if k != "managers"} == {
        "user_id": "alice",
        "used": 1,
        "limit": 5,
        "level": "ok",
        "pool_idle": 1,
        "restarts": 7,
    }
    assert [m["websocket_id"] for m in dump["managers"]] == [
        holding.context.websocket_id,
        closing.context.websocket_id,
    ]
    assert [m["state"] for m in dump["managers"]] == ["connected", "closing"]


def test_a_users_dump_is_plain_json() -> None:
    children = Children()
    children.add(a_child(ManagerStats(0.0, 1_000.0)))
    dump = user_snapshot("alice", children, limit=5, restarts=0, clock=ManualClock())
    assert json.loads(json.dumps(dump)) == dump
