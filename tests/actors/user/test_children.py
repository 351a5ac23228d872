"""A user supervisor's books: children by id, slot holders by key, managers by urn."""

from __future__ import annotations

from typing import Any, cast

import pykka
import pytest

from actors.context import UserExecutionContext
from actors.handle import ConnectionHandle
from actors.policies.reaping import ChildView
from actors.policies.restart import RestartIntensity
from actors.ports import ManagerStats, QueuePort
from actors.user.children import Child, Children


def a_ref(name: str) -> pykka.ActorRef[Any]:
    """A stand-in for a manager's ref: the books only keep and list refs."""
    return cast("pykka.ActorRef[Any]", name)


def a_child(thread_id: str | None = None, manager: str | None = "manager") -> Child:
    context = UserExecutionContext.from_websocket_request("alice", thread_id)
    return Child(
        context,
        QueuePort(),
        cast("ConnectionHandle", None),  # never used by the books
        ManagerStats(connected_at=0.0, last_activity=10.0),
        None if manager is None else a_ref(f"{manager}-{context.websocket_id}"),
        RestartIntensity(3, 10.0),
    )


def test_an_added_child_holds_the_slot_of_its_key() -> None:
    children, child = Children(), a_child()
    children.add(child)
    assert children.holder(child.context.isolation_key) is child
    assert children.by_id[child.context.websocket_id] is child
    assert children.used == 1
    assert children.holder("alice:another-thread") is None


def test_dropping_the_key_of_a_superseded_child_leaves_the_new_holder_in_place() -> None:
    children, old = Children(), a_child()
    new = a_child(old.context.thread_id)
    children.add(old)
    children.add(new)  # the same key: the new connection holds it now
    children.drop_key(old)
    assert children.holder(new.context.isolation_key) is new
    assert children.used == 1
    children.drop_key(new)
    assert children.holder(new.context.isolation_key) is None
    assert children.used == 0
    assert set(children.by_id) == {old.context.websocket_id, new.context.websocket_id}


def test_closing_children_are_listed_in_the_order_they_began_closing() -> None:
    children = Children()
    first, second, third = a_child(), a_child(), a_child()
    for child in (first, second, third):
        children.add(child)
    children.mark_closing(third, 5.0)
    children.mark_closing(first, 7.0)
    assert children.closing() == [third, first]
    assert children.connected() == [second]
    assert (first.state, first.closing_since) == ("closing", 7.0)


def test_a_removed_child_is_forgotten_but_its_id_remembered_for_late_messages() -> None:
    children, child = Children(), a_child()
    children.add(child)
    children.mark_closing(child, 1.0)
    children.remove(child)
    ws = child.context.websocket_id
    assert ws not in children.by_id
    assert children.closing() == [] and children.used == 0
    assert ws in children.retired


def test_only_the_most_recent_retired_ids_are_remembered() -> None:
    children = Children()
    removed = [a_child() for _ in range(1100)]
    for child in removed:
        children.add(child)
        children.remove(child)
    kept = list(children.retired)
    assert kept == [c.context.websocket_id for c in removed[-len(kept) :]]
    assert removed[0].context.websocket_id not in children.retired
    assert 0 < len(kept) < 1100


def test_every_known_manager_is_listed_serving_pooled_or_leaving() -> None:
    children = Children()
    serving, between_restarts = a_child(), a_child(manager=None)
    children.add(serving)
    children.add(between_restarts)
    children.pool.append((a_ref("pooled"), 1.0))
    children.detaching["urn:d"] = (a_ref("detaching"), 2.0)
    children.stopping["urn:s"] = (a_ref("stopping"), 3.0)
    assert serving.manager is not None
    assert children.managers() == [serving.manager, "pooled", "detaching", "stopping"]


@pytest.mark.parametrize("last_seen", [None, 12.5])
def test_a_childs_view_follows_its_state_and_its_counters(last_seen: float | None) -> None:
    child = a_child()
    child.stats.last_activity = 11.0
    child.stats.last_seen = last_seen
    child.state = "closing"
    assert child.view() == ChildView(child.context.websocket_id, "closing", 11.0, last_seen)
