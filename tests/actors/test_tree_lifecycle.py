"""A connection's life in the supervision tree: admit, talk, close, resume, reuse."""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Iterator

import pykka
import pytest

from actors.clock import ManualClock
from actors.codes import ServerCloseCode
from actors.context import UnifiedIdGenerator, UserExecutionContext
from actors.errors import TreeNotRunning
from actors.manager import ManagerActor
from actors.ports import QueuePort
from actors.tree import SupervisionTree
from supervisor.admin.metrics import MetricsObserver
from tests.helpers import actor_threads, connect, handle_of, make_config, wait_until


@pytest.fixture
def tree(metrics: MetricsObserver, clock: ManualClock) -> Iterator[SupervisionTree]:
    with SupervisionTree(make_config(), clock=clock, observer=metrics, tick=False) as tree:
        yield tree


def test_end_to_end_manager_lifecycle(tree: SupervisionTree) -> None:
    """Test complete manager lifecycle with SSOT context

    The seed's integration test as it is written; only its factory is the tree:
    ``factory.create_manager(context)`` is an admission, ``manager.close()`` the
    handle's close, ``factory.get_user_manager_count`` the ledger's count.
    """
    # Create manager with single context
    context = UserExecutionContext.from_websocket_request(
        user_id="test-user",
        *UnifiedIdGenerator.generate_user_context_ids("test-user", "websocket_session"),  # noqa: B026 - the seed's call
    )
    manager = handle_of(tree.admit(context, QueuePort()))

    # Simulate connection close
    manager.closed()

    # Verify immediate cleanup
    remaining = tree.ledger.usage(context.user_id)
    assert remaining == 0


def test_a_manager_created_then_closed_leaves_the_users_count_at_zero(
    tree: SupervisionTree,
) -> None:
    admission, _port, ctx = connect(tree, "alice")
    handle = handle_of(admission)
    assert tree.ledger.usage("alice") == 1
    assert tree.ledger.holders("alice") == {ctx.isolation_key: ctx.websocket_id}
    handle.closed(ServerCloseCode.NORMAL)
    wait_until(lambda: tree.ledger.usage("alice") == 0, what="slot freed")
    users = tree.snapshot()["users"]
    assert [(u["user_id"], u["used"], u["managers"]) for u in users] == [("alice", 0, [])]


def test_frames_delivered_through_the_handle_come_back_through_the_port(
    tree: SupervisionTree,
) -> None:
    admission, port, _ = connect(tree, "alice")
    handle = handle_of(admission)
    for n in range(3):
        handle.deliver(json.dumps({"n": n}))
    echoed = [json.loads(port.frames.get(timeout=2)) for _ in range(3)]
    assert echoed == [{"n": 0}, {"n": 1}, {"n": 2}]
    manager = tree.snapshot()["users"][0]["managers"][0]
    assert (manager["messages_in"], manager["messages_out"]) == (3, 3)


def test_the_quota_refuses_one_over_the_limit_and_admits_at_once_after_a_close(
    tree: SupervisionTree, metrics: MetricsObserver
) -> None:
    limit = tree.settings.quota.max_managers_per_user
    open_ = [connect(tree, "alice") for _ in range(limit)]
    refused, _, _ = connect(tree, "alice")
    assert not refused.admitted
    assert refused.result == "rejected_quota" and refused.retry_after is not None
    handle_of(open_[0][0]).closed()
    wait_until(lambda: tree.ledger.usage("alice") == limit - 1)
    again, _, _ = connect(tree, "alice")
    assert again.admitted
    assert tree.ledger.usage("alice") == limit
    assert metrics.value("ws_supervisor_admissions_total", {"result": "rejected_quota"}) == 1
    assert metrics.value("ws_supervisor_thread_id_mismatches_total") == 0


def test_one_users_full_quota_does_not_touch_another_user(tree: SupervisionTree) -> None:
    limit = tree.settings.quota.max_managers_per_user
    for _ in range(limit):
        connect(tree, "alice")
    bob, _, _ = connect(tree, "bob")
    assert bob.admitted
    assert (tree.ledger.usage("alice"), tree.ledger.usage("bob")) == (limit, 1)


def test_resuming_a_thread_supersedes_the_old_connection_with_4001_and_holds_one_slot(
    tree: SupervisionTree, metrics: MetricsObserver
) -> None:
    _first, old_port, ctx = connect(tree, "alice")
    second, new_port, new_ctx = connect(tree, "alice", thread_id=ctx.thread_id)
    assert second.result == "superseded"
    assert old_port.wait_closed(2) == ServerCloseCode.SUPERSEDED
    assert not new_port.is_closed
    assert new_ctx.isolation_key == ctx.isolation_key
    assert tree.ledger.holders("alice") == {ctx.isolation_key: new_ctx.websocket_id}
    wait_until(lambda: len(tree.snapshot()["users"][0]["managers"]) == 1)
    handle_of(second).closed()
    wait_until(lambda: tree.ledger.usage("alice") == 0)
    assert (
        metrics.value("ws_supervisor_cleanups_total", {"reason": "supersede", "result": "ok"}) == 1
    )
    assert metrics.value("ws_supervisor_thread_id_mismatches_total") == 0


def test_a_late_close_of_a_superseded_connection_does_not_free_the_new_ones_slot(
    tree: SupervisionTree, metrics: MetricsObserver
) -> None:
    first, old_port, ctx = connect(tree, "alice", confirm_close=False)
    _second, _, new_ctx = connect(tree, "alice", thread_id=ctx.thread_id)
    assert old_port.wait_closed(2) == ServerCloseCode.SUPERSEDED
    handle_of(first).closed(ServerCloseCode.SUPERSEDED)  # the old close arrives after the takeover
    wait_until(lambda: len(tree.snapshot()["users"][0]["managers"]) == 1)
    assert tree.ledger.holders("alice") == {ctx.isolation_key: new_ctx.websocket_id}
    assert metrics.value("ws_supervisor_thread_id_mismatches_total") == 0


def test_a_closed_connections_manager_is_pooled_and_reused_without_leftovers(
    tree: SupervisionTree, metrics: MetricsObserver
) -> None:
    first, first_port, _ = connect(tree, "alice")
    handle = handle_of(first)
    handle.deliver("from the first connection")
    assert first_port.frames.get(timeout=2) == "from the first connection"
    handle.closed()
    wait_until(lambda: tree.snapshot()["users"][0]["pool_idle"] == 1, what="manager pooled")
    handle.deliver("late frame of the first connection")  # must go nowhere
    second, second_port, _ = connect(tree, "alice")
    assert metrics.value("ws_supervisor_pool_reuses_total") == 1
    handle_of(second).deliver("hello")
    assert second_port.frames.get(timeout=2) == "hello"
    manager = tree.snapshot()["users"][0]["managers"][0]
    assert (manager["messages_in"], manager["messages_out"], manager["restarts"]) == (1, 1, 0)
    assert second_port.frames.empty()


def test_a_manager_that_has_served_pool_max_uses_connections_is_stopped_not_pooled(
    metrics: MetricsObserver, clock: ManualClock
) -> None:
    config = make_config({"pool": {"size": 4, "max_uses": 2}})
    with SupervisionTree(config, clock=clock, observer=metrics, tick=False) as tree:
        first, _, _ = connect(tree, "alice")
        handle_of(first).closed()
        wait_until(lambda: tree.snapshot()["users"][0]["pool_idle"] == 1, what="pooled")
        second, _, _ = connect(tree, "alice")
        assert metrics.value("ws_supervisor_pool_reuses_total") == 1  # its second connection
        handle_of(second).closed()
        wait_until(lambda: tree.ledger.usage("alice") == 0, what="slot freed")
        wait_until(lambda: not pykka.ActorRegistry.get_by_class(ManagerActor), what="stopped")
        assert tree.snapshot()["users"][0]["pool_idle"] == 0
        connect(tree, "alice")
        assert metrics.value("ws_supervisor_pool_reuses_total") == 1


def test_a_peer_gone_frees_only_the_slot_and_the_close_that_follows_retires_the_manager(
    tree: SupervisionTree, metrics: MetricsObserver
) -> None:
    limit = tree.settings.quota.max_managers_per_user
    open_ = [connect(tree, "alice") for _ in range(limit)]
    gone = handle_of(open_[0][0])
    gone.peer_gone()
    wait_until(lambda: tree.ledger.usage("alice") == limit - 1, what="slot freed")
    (child,) = [m for m in tree.snapshot()["users"][0]["managers"] if not m["holds_slot"]]
    assert (child["websocket_id"], child["state"]) == (gone.websocket_id, "closing")
    assert metrics.value("ws_supervisor_cleanups_total", {"reason": "close", "result": "ok"}) == 0
    newcomer, _, _ = connect(tree, "alice")  # the slot is usable before the close is done
    assert newcomer.admitted
    gone.closed(1006)  # abnormal closure: no close frame
    wait_until(lambda: len(tree.snapshot()["users"][0]["managers"]) == limit, what="retired")
    assert metrics.value("ws_supervisor_cleanups_total", {"reason": "close", "result": "ok"}) == 1
    assert metrics.value("ws_supervisor_release_latency_seconds_count") == 1
    assert metrics.value("ws_supervisor_thread_id_mismatches_total") == 0


def test_a_caller_that_stops_waiting_leaves_no_slot_behind(tree: SupervisionTree) -> None:
    ticket = tree.admit_nowait(UserExecutionContext.from_websocket_request("alice"), QueuePort())
    withdrawn = ticket.withdraw()
    tree.snapshot()  # the supervisor has handled the admission once this answers
    wait_until(lambda: len(tree.snapshot()["users"]) == 1)
    assert tree.ledger.usage("alice") == (0 if withdrawn else 1)
    assert (ticket.wait(0) is None) == withdrawn


def test_stopping_the_tree_closes_every_connection_with_1001_and_frees_every_slot(
    metrics: MetricsObserver,
) -> None:
    tree = SupervisionTree(make_config(), observer=metrics).start()
    ports = [connect(tree, user)[1] for user in ("alice", "bob", "bob")]
    tree.stop()
    assert [port.close_code for port in ports] == [ServerCloseCode.GOING_AWAY] * 3
    assert tree.ledger.total() == 0
    assert not tree.running
    wait_until(lambda: not actor_threads(), what="every actor thread gone")


def test_the_snapshot_is_plain_json_with_the_documented_fields(tree: SupervisionTree) -> None:
    _admission, _, ctx = connect(tree, "alice")
    snap = json.loads(json.dumps(tree.snapshot()))
    root = snap["root"]
    assert {"node_level", "node_used", "node_limit", "levels", "thresholds", "alerts"} <= set(root)
    (user,) = snap["users"]
    assert {"user_id", "used", "limit", "level", "pool_idle", "restarts", "managers"} <= set(user)
    (manager,) = user["managers"]
    assert manager["isolation_key"] == ctx.isolation_key
    assert manager["websocket_id"] == ctx.websocket_id
    assert manager["thread_id"] == ctx.thread_id and manager["run_id"] == ctx.run_id
    assert manager["state"] == "connected"
    for key in (
        "connected_at",
        "last_activity",
        "messages_in",
        "messages_out",
        "outbound_queued",
        "restarts",
    ):
        assert key in manager


def test_the_snapshot_says_the_wall_time_its_ages_and_idle_times_are_read_against(
    tree: SupervisionTree, clock: ManualClock
) -> None:
    connect(tree, "alice")
    clock.advance(7.5)
    snap = tree.snapshot()
    assert snap["root"]["now"] == round(clock.wall(), 3)
    (manager,) = snap["users"][0]["managers"]
    assert snap["root"]["now"] - manager["connected_at"] == pytest.approx(7.5)
    assert snap["root"]["now"] - manager["last_activity"] == pytest.approx(7.5)


def test_a_push_reaches_the_threads_connection_or_all_the_users_and_never_another_user(
    tree: SupervisionTree,
) -> None:
    _, first, ctx = connect(tree, "alice")
    _, second, _ = connect(tree, "alice")
    _, bobs, _ = connect(tree, "bob")
    assert tree.push("alice", ctx.thread_id, "to one thread") == 1
    assert first.frames.get(timeout=2) == "to one thread"
    assert tree.push("alice", None, "to all") == 2
    assert first.frames.get(timeout=2) == second.frames.get(timeout=2) == "to all"
    assert tree.push("carol", None, "to nobody") == 0
    assert tree.push("bob", ctx.thread_id, "alice's thread under bob's name") == 0
    assert bobs.frames.empty() and second.frames.empty()


def test_a_push_told_here_runs_on_the_calling_thread_when_the_tree_is_idle(
    tree: SupervisionTree,
) -> None:
    _, first, ctx = connect(tree, "alice")
    _, second, _ = connect(tree, "alice")
    caller = threading.current_thread().name
    replies: queue.SimpleQueue[tuple[int, str]] = queue.SimpleQueue()

    def reply(count: int) -> None:
        replies.put((count, threading.current_thread().name))

    for attempt in range(20):  # an actor still finishing a turn is told as usual
        time.sleep(0.02)
        tree.push_nowait("alice", None, f"here {attempt}", reply, here=True)
        assert first.frames.get(timeout=2) == second.frames.get(timeout=2) == f"here {attempt}"
        answered = replies.get(timeout=2)
        if answered[1] == caller:
            break
    assert answered == (2, caller)  # the root's, the supervisor's, the managers' turns: here
    tree.push_nowait("alice", ctx.thread_id, "by a worker", reply)
    assert first.frames.get(timeout=2) == "by a worker"
    count, thread = replies.get(timeout=2)
    assert count == 1 and thread != caller
    tree.stop()
    with pytest.raises(TreeNotRunning):
        tree.push_nowait("alice", None, "stopped", reply, here=True)
