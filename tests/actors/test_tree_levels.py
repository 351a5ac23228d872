"""Thresholds, cleanup at the higher levels, eviction, the node cap, reload."""

from __future__ import annotations

from actors.clock import ManualClock
from actors.codes import ServerCloseCode
from actors.tree import SupervisionTree
from supervisor.admin.fanout import FanoutObserver
from supervisor.admin.metrics import MetricsObserver
from supervisor.admin.readiness import Readiness
from tests.helpers import connect, handle_of, make_config, wait_until


def test_a_users_level_rises_through_warning_critical_and_emergency_and_falls_back() -> None:
    metrics = MetricsObserver()
    config = make_config(
        {"quota": {"max_managers_per_user": 10}, "thresholds": {"emergency_action": "none"}}
    )
    with SupervisionTree(config, observer=metrics, clock=ManualClock(), tick=False) as tree:
        seen = []
        handles = []
        for _ in range(9):
            admission, _, _ = connect(tree, "alice")
            handles.append(handle_of(admission))
            seen.append(tree.snapshot()["users"][0]["level"])
        assert seen == ["ok"] * 4 + ["warning"] * 3 + ["critical", "emergency"]
        for handle in handles:
            handle.closed()
        wait_until(lambda: tree.snapshot()["users"][0]["level"] == "ok")
        alerts = [(a["from"], a["to"]) for a in tree.snapshot()["root"]["alerts"]]
        assert alerts[:3] == [("ok", "warning"), ("warning", "critical"), ("critical", "emergency")]
        assert alerts[-1][1] == "ok"
        assert metrics.value("ws_supervisor_users_at_level", {"level": "ok"}) == 1
        assert (
            metrics.value(
                "ws_supervisor_level_changes_total", {"scope": "user", "level": "emergency"}
            )
            == 1
        )


def test_reaching_critical_reaps_idle_connections_at_once() -> None:
    clock = ManualClock()
    config = make_config(
        {
            "quota": {"max_managers_per_user": 10, "proactive_cleanup_ratio": 1.0},
            "timeouts": {"idle_timeout": 30.0},
        }
    )
    with SupervisionTree(config, clock=clock, tick=False) as tree:
        stale = [connect(tree, "alice")[1] for _ in range(4)]
        clock.advance(31.0)
        fresh = [connect(tree, "alice")[1] for _ in range(4)]  # the 8th makes alice critical
        assert [port.wait_closed(2) for port in stale] == [ServerCloseCode.IDLE_TIMEOUT] * 4
        wait_until(lambda: tree.ledger.usage("alice") == 4)
        assert not any(port.is_closed for port in fresh)


def test_reaching_emergency_sheds_the_longest_idle_connections_down_below_critical() -> None:
    clock = ManualClock()
    config = make_config(
        {
            "quota": {"max_managers_per_user": 10, "proactive_cleanup_ratio": 1.0},
            "thresholds": {"shed_min_idle": 5.0},
        }
    )
    with SupervisionTree(config, clock=clock, tick=False) as tree:
        ports = []
        for _ in range(9):
            ports.append(connect(tree, "alice")[1])
            clock.advance(1.0)
        # at the 9th (emergency) the idlest ones are shed until 7 remain (below critical)
        wait_until(lambda: tree.ledger.usage("alice") == 7)
        assert [p.close_code for p in ports[:2]] == [ServerCloseCode.EVICTED] * 2
        assert not any(p.is_closed for p in ports[2:])


def test_the_evict_policy_closes_the_longest_idle_connection_with_4002_and_admits() -> None:
    clock = ManualClock()
    config = make_config(
        {"quota": {"policy": "evict_oldest_idle"}, "thresholds": {"emergency_action": "none"}}
    )
    with SupervisionTree(config, clock=clock, tick=False) as tree:
        limit = config.quota.max_managers_per_user
        ports = []
        for _ in range(limit):
            admission, port, _ = connect(tree, "alice")
            ports.append(port)
            clock.advance(1.0)
        handle_of(admission).deliver("keeps the newest busy")
        late, _, _ = connect(tree, "alice")
        assert late.result == "evicted"
        assert ports[0].wait_closed(2) == ServerCloseCode.EVICTED
        assert tree.ledger.usage("alice") == limit


def test_the_node_cap_refuses_slots_beyond_it_for_every_user() -> None:
    config = make_config({"quota": {"node_max_managers": 4}})
    with SupervisionTree(config, clock=ManualClock(), tick=False) as tree:
        results = [connect(tree, f"user{n}")[0] for n in range(5)]
        assert [r.admitted for r in results[:3]] == [True] * 3
        # 4 of 4 (and 3 of 4 = 75% is critical, 4/4 emergency): new users are refused
        refused = [r for r in results if not r.admitted]
        assert refused and all(r.result == "rejected_node" for r in refused)
        assert tree.ledger.total() <= 4


def test_an_empty_supervisor_is_stopped_after_its_ttl() -> None:
    clock = ManualClock()
    config = make_config({"pool": {"size": 0}})
    with SupervisionTree(config, clock=clock, tick=False) as tree:
        admission, _, _ = connect(tree, "alice")
        handle_of(admission).closed()
        wait_until(lambda: tree.ledger.usage("alice") == 0)
        tree.snapshot()  # an ask to the root: it has taken the reports sent before it
        tree.tick()
        clock.advance(config.cleanup.empty_supervisor_ttl)
        tree.tick()
        wait_until(lambda: tree.supervisors() == {}, what="empty supervisor stopped")


def test_a_new_quota_applies_live_without_dropping_connections() -> None:
    config = make_config({"quota": {"max_managers_per_user": 2}})
    with SupervisionTree(config, clock=ManualClock(), tick=False) as tree:
        ports = [connect(tree, "alice")[1] for _ in range(2)]
        assert not connect(tree, "alice")[0].admitted
        tree.reconfigure(make_config({"quota": {"max_managers_per_user": 3}}))
        assert connect(tree, "alice")[0].admitted
        assert not any(p.is_closed for p in ports)


def test_an_emergency_cleanup_stalled_past_30s_is_timed_to_its_end_and_trips_readiness() -> None:
    """Closes never confirmed, abandoned only at a 45 s cleanup timeout: the cleanup took 45 s."""
    clock, metrics = ManualClock(), MetricsObserver()
    readiness = Readiness(clock)
    config = make_config(
        {
            "quota": {"max_managers_per_user": 10, "proactive_cleanup_ratio": 1.0},
            "timeouts": {"idle_timeout": 30.0},
            "cleanup": {"emergency_cleanup_timeout": 45.0},
        }
    )
    observer = FanoutObserver(metrics, readiness)
    with SupervisionTree(config, clock=clock, observer=observer, tick=False) as tree:
        stale = [connect(tree, "alice", confirm_close=False)[1] for _ in range(4)]
        clock.advance(31.0)
        for _ in range(4):
            connect(tree, "alice")  # the 8th makes alice critical: the 4 stale ones are reaped
        assert [port.wait_closed(2) for port in stale] == [ServerCloseCode.IDLE_TIMEOUT] * 4
        assert metrics.value("ws_supervisor_emergency_cleanup_seconds_count") == 0  # under way
        clock.advance(44.0)
        tree.tick()
        tree.snapshot()  # the tick has been handled
        assert metrics.value("ws_supervisor_emergency_cleanup_seconds_count") == 0
        assert readiness.evaluate() == (True, [])
        clock.advance(1.0)  # 45 s after the start: the stalled closes are abandoned
        tree.tick()
        wait_until(lambda: metrics.value("ws_supervisor_emergency_cleanup_seconds_count") == 1)
        assert metrics.value("ws_supervisor_emergency_cleanup_seconds_sum") == 45.0
        assert metrics.value("ws_supervisor_abandoned_actors_total") == 4
        assert readiness.evaluate() == (False, ["emergency cleanup took 45.0s"])


def test_a_shed_at_emergency_is_part_of_the_emergency_cleanup_and_timed_to_its_abandonment() -> (
    None
):
    clock, metrics = ManualClock(), MetricsObserver()
    config = make_config(
        {
            "quota": {"max_managers_per_user": 10, "proactive_cleanup_ratio": 1.0},
            "thresholds": {"shed_min_idle": 5.0},
            "cleanup": {"emergency_cleanup_timeout": 15.0},
        }
    )
    with SupervisionTree(config, clock=clock, observer=metrics, tick=False) as tree:
        ports = []
        for _ in range(8):
            clock.advance(1.0)
            ports.append(connect(tree, "alice", confirm_close=False)[1])
        # critical at the 8th reaps nothing (all live): that cleanup ends at once
        wait_until(lambda: metrics.value("ws_supervisor_emergency_cleanup_seconds_count") == 1)
        assert metrics.value("ws_supervisor_emergency_cleanup_seconds_sum") == 0.0
        clock.advance(1.0)
        ports.append(connect(tree, "alice", confirm_close=False)[1])
        # emergency at the 9th sheds the 2 idlest; their closes are never confirmed
        assert [p.wait_closed(2) for p in ports[:2]] == [ServerCloseCode.EVICTED] * 2
        assert not any(p.is_closed for p in ports[2:])
        clock.advance(15.0)
        tree.tick()
        wait_until(lambda: metrics.value("ws_supervisor_emergency_cleanup_seconds_count") == 2)
        assert metrics.value("ws_supervisor_emergency_cleanup_seconds_sum") == 15.0
