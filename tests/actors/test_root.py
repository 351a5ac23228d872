"""The root monitor: routes to user supervisors, watches the node, replaces crashed ones."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pykka
import pytest

from actors.clock import ManualClock
from actors.codes import ServerCloseCode
from actors.manager import ManagerActor
from actors.messages import SupervisorFailed, UsageReport
from actors.root import RootMonitorActor
from actors.tree import SupervisionTree
from supervisor.admin.metrics import MetricsObserver
from tests.helpers import connect, handle_of, make_config, wait_until

pytestmark = pytest.mark.timeout(30)


def root_of(tree: SupervisionTree) -> pykka.ActorRef[Any]:
    (root,) = pykka.ActorRegistry.get_by_class(RootMonitorActor)
    assert tree.running
    return root


@pytest.fixture
def tree(metrics: MetricsObserver, clock: ManualClock) -> Iterator[SupervisionTree]:
    with SupervisionTree(make_config(), clock=clock, observer=metrics, tick=False) as tree:
        yield tree


def test_the_root_refuses_a_new_user_at_node_emergency_but_still_routes_a_known_one() -> None:
    config = make_config(
        {
            "quota": {"max_managers_per_user": 10, "node_max_managers": 10},
            "thresholds": {"critical_action": "none", "emergency_action": "none"},
        }
    )
    with SupervisionTree(config, clock=ManualClock(), tick=False) as tree:
        for _ in range(9):  # 9 of 10: the node is at emergency
            assert connect(tree, "alice")[0].admitted
        assert tree.snapshot()["root"]["node_level"] == "emergency"
        refused, _, _ = connect(tree, "bob")
        assert (refused.result, refused.reason, refused.retry_after) == (
            "rejected_node",
            "node_emergency",
            5.0,
        )
        assert "bob" not in tree.supervisors()
        assert connect(tree, "alice")[0].admitted  # alice's supervisor is known


def test_a_take_back_reaps_the_named_connection_and_an_unknown_one_is_ignored(
    tree: SupervisionTree,
) -> None:
    _, port, ctx = connect(tree, "alice")
    _, other, _ = connect(tree, "alice")
    tree.take_back("nobody", ctx.websocket_id, "evict")
    tree.take_back("alice", "ws_unknown", "evict")
    tree.take_back("alice", ctx.websocket_id, "supersede", "resumed on node b")
    assert port.wait_closed(2) == ServerCloseCode.SUPERSEDED
    assert port.close_reason == "resumed on node b"
    wait_until(lambda: tree.ledger.usage("alice") == 1, what="the taken slot freed")
    assert not other.is_closed


def test_a_usage_report_from_a_supervisor_the_root_does_not_know_is_ignored(
    tree: SupervisionTree,
) -> None:
    connect(tree, "alice")
    root_of(tree).tell(UsageReport("ghost", used=9, limit=10, pool_idle=0, admits_seen=9))
    root = tree.snapshot()["root"]
    assert (root["node_used"], root["users"]) == (1, 1)
    assert "ghost" not in root["levels"] and set(root["levels"]) == {"ok"}


def test_the_root_counts_the_node_and_each_users_level_from_their_reports(
    tree: SupervisionTree,
) -> None:
    assert tree.settings.quota.max_managers_per_user == 5  # the ci profile's
    for _ in range(3):
        connect(tree, "alice")  # 3 of 5: warning
    connect(tree, "bob")  # 1 of 5: ok
    snap = tree.snapshot()
    assert snap["root"]["node_used"] == tree.ledger.total() == 4
    assert snap["root"]["levels"] == {"warning": 1, "ok": 1}
    assert {u["user_id"]: u["level"] for u in snap["users"]} == {"alice": "warning", "bob": "ok"}


def test_a_crashed_supervisor_is_replaced_by_a_fresh_one_and_its_managers_stopped(
    tree: SupervisionTree, metrics: MetricsObserver
) -> None:
    ports = [connect(tree, "alice")[1] for _ in range(2)]
    before = tree.supervisors()["alice"]
    assert tree.crash_user_supervisor("alice")
    assert [p.wait_closed(2) for p in ports] == [ServerCloseCode.SERVICE_RESTART] * 2
    wait_until(lambda: not pykka.ActorRegistry.get_by_class(ManagerActor), what="managers stop")
    after = tree.supervisors()["alice"]
    assert after.actor_urn != before.actor_urn and after.is_alive()
    assert tree.ledger.usage("alice") == 0
    assert metrics.value("ws_supervisor_cleanups_total", {"reason": "crash", "result": "ok"}) == 2
    assert tree.snapshot()["root"]["node_used"] == 0


def test_a_user_with_no_connection_is_forgotten_one_ttl_after_its_last_close_pool_and_all(
    clock: ManualClock,
) -> None:
    config = make_config({"pool": {"size": 1, "idle_seconds": 600.0}})  # ttl 2 s in ci
    ttl = config.cleanup.empty_supervisor_ttl
    with SupervisionTree(config, clock=clock, tick=False) as tree:
        admission, _, _ = connect(tree, "alice")
        handle_of(admission).closed()
        wait_until(lambda: tree.snapshot()["users"][0]["pool_idle"] == 1, what="pooled")
        pooled = pykka.ActorRegistry.get_by_class(ManagerActor)
        assert len(pooled) == 1
        tree.tick()
        clock.advance(ttl - 0.01)
        tree.tick()
        assert "alice" in tree.supervisors()  # within its ttl: kept
        clock.advance(0.01)
        tree.tick()  # the ttl is over: a pooled manager does not keep the user
        wait_until(lambda: tree.supervisors() == {}, what="the empty supervisor retired")
        wait_until(lambda: not pooled[0].is_alive(), what="its pooled manager stopped with it")
        snap = tree.snapshot()
        assert snap["users"] == [] and snap["root"]["users"] == 0
        # the user comes back: a fresh supervisor serves it
        _, port, _ = connect(tree, "alice")
        assert tree.ledger.usage("alice") == 1 and not port.is_closed


def test_stopping_the_root_stops_every_user_supervisor(tree: SupervisionTree) -> None:
    for user in ("alice", "bob"):
        connect(tree, user)
    supervisors = list(tree.supervisors().values())
    root_of(tree).stop(timeout=5)
    wait_until(lambda: not any(ref.is_alive() for ref in supervisors), what="supervisors stop")
    assert tree.ledger.total() == 0


def test_a_failure_report_of_a_supervisor_already_replaced_frees_none_of_the_new_ones_slots(
    tree: SupervisionTree,
) -> None:
    _, port, _ = connect(tree, "alice")
    current = tree.supervisors()["alice"]
    root_of(tree).tell(SupervisorFailed("alice", "urn:uuid:an-older-supervisor", (), ()))
    snap = tree.snapshot()
    assert tree.supervisors()["alice"].actor_urn == current.actor_urn
    assert not port.is_closed
    assert tree.ledger.usage("alice") == 1
    assert snap["root"]["node_used"] == 1
