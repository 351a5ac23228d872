"""The daemon's answers made of its workers': real expositions of the daemon's metrics."""

from __future__ import annotations

from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from supervisor.admin.dump import every_user
from supervisor.admin.metrics import MetricsObserver
from supervisor.workers.aggregate import (
    Metrics,
    SeatAnswer,
    merge_readiness,
    merge_states,
    parse_exposition,
)


def worker(admitted: int, refused: int = 0, managers: int = 0, latency: float = 0.002) -> Any:
    observer = MetricsObserver()
    for _ in range(admitted):
        observer.admission("admitted")
    for _ in range(refused):
        observer.admission("rejected_quota")
    observer.usage(managers, 1 if managers else 0, {"ok": 1} if managers else {})
    observer.release_latency(latency)
    return parse_exposition(observer.exposition().decode())


def lines(text: bytes) -> set[str]:
    return set(text.decode().splitlines())


def test_counters_gauges_and_histograms_are_summed_over_the_workers() -> None:
    text = Metrics().exposition([worker(3, managers=2), worker(1, 1, managers=5, latency=0.3)])
    assert {
        'ws_supervisor_admissions_total{result="admitted"} 4.0',
        'ws_supervisor_admissions_total{result="rejected_quota"} 1.0',
        "ws_supervisor_managers_active 7.0",
        "ws_supervisor_users_active 2.0",
        'ws_supervisor_users_at_level{level="ok"} 2.0',
        "ws_supervisor_release_latency_seconds_count 2.0",
        'ws_supervisor_release_latency_seconds_bucket{le="0.0025"} 1.0',
        'ws_supervisor_release_latency_seconds_bucket{le="+Inf"} 2.0',
    } <= lines(text)
    assert parse_exposition(text.decode())  # prometheus-client's parser reads it back


def test_the_ledger_is_up_only_if_every_worker_s_is_and_times_take_the_extreme() -> None:
    down = MetricsObserver()
    down.ledger_available(False)
    early, late = worker(1), worker(1)
    early_created = early["ws_supervisor_admissions_created"].samples
    late_created = late["ws_supervisor_admissions_created"].samples
    downs = parse_exposition(down.exposition().decode())
    merged = Metrics().merge([early, late, downs])
    assert merged["ws_supervisor_ledger_available"].samples == {
        ("ws_supervisor_ledger_available", ()): 0.0
    }
    key = next(iter(early_created))
    down_created = downs["ws_supervisor_admissions_created"].samples  # every series from the start
    assert merged["ws_supervisor_admissions_created"].samples[key] == min(
        early_created[key], late_created[key], down_created[key]
    )
    last = "ws_supervisor_last_release_timestamp_seconds"
    assert merged[last].samples[(last, ())] == max(
        early[last].samples[(last, ())], late[last].samples[(last, ())]
    )


def test_the_worst_level_a_trigger_on_any_worker_and_the_tightest_open_files_win() -> None:
    calm, troubled = MetricsObserver(), MetricsObserver()
    calm.watch_readiness(set)
    troubled.watch_readiness(lambda: {"cleanup_slow"})
    troubled.level_changed("node", "ok", "critical")
    merged = Metrics().merge([parse_exposition(o.exposition().decode()) for o in (calm, troubled)])

    def one(name: str, **labels: str) -> float:
        return merged[name].samples[(name, tuple(sorted(labels.items())))]

    assert one("ws_supervisor_node_level") == 2.0  # critical: the worst, not a sum
    assert one("ws_supervisor_ready", trigger="cleanup_slow") == 0.0  # holds on one worker
    assert one("ws_supervisor_ready", trigger="success_rate") == 1.0
    build = next(iter(merged["ws_supervisor_build_info"].samples.values()))
    assert build == 1.0  # an info gauge stays 1
    if "process_open_fds" in merged:  # prometheus-client's process collector (Linux)
        fds = merged["process_open_fds"].samples[("process_open_fds", ())]
        limit = merged["process_max_fds"].samples[("process_max_fds", ())]
        assert 0 < fds <= limit


def test_a_dead_worker_s_counters_are_carried_so_no_total_ever_goes_back() -> None:
    metrics = Metrics()
    alive, dying = worker(5, managers=5), worker(7, 2, managers=3)
    before = lines(metrics.exposition([alive, dying]))
    assert 'ws_supervisor_admissions_total{result="admitted"} 12.0' in before
    metrics.carry(dying)
    after = lines(metrics.exposition([alive, worker(1, managers=1)]))  # its successor
    assert 'ws_supervisor_admissions_total{result="admitted"} 13.0' in after
    assert 'ws_supervisor_admissions_total{result="rejected_quota"} 2.0' in after
    assert "ws_supervisor_release_latency_seconds_count 3.0" in after
    assert "ws_supervisor_managers_active 6.0" in after  # gauges: the live workers only


def test_a_second_death_adds_to_what_is_carried() -> None:
    metrics = Metrics()
    metrics.carry(worker(2))
    metrics.carry(worker(3))
    assert 'ws_supervisor_admissions_total{result="admitted"} 5.0' in lines(metrics.exposition([]))


def test_the_master_s_own_families_follow_the_workers() -> None:
    up = GaugeMetricFamily("ws_supervisor_workers_up", "Worker processes serving.")
    up.add_metric([], 2)
    text = Metrics().exposition([worker(1)], [up])
    assert "ws_supervisor_workers_up 2.0" in lines(text)


def snapshot(users: list[str], used: int, level: str = "ok", threads: int = 7) -> dict[str, Any]:
    return {
        "root": {
            "node_level": level,
            "node_used": used,
            "node_limit": 5000,
            "users": len(users),
            "levels": {"ok": len(users)},
            "threads": threads,
            "slots_held": used,
            "ledger": "memory",
            "supervisor_restarts": 0,
            "alerts": [{"at": float(used), "scope": "node"}],
        },
        "users": [{"user_id": user, "used": 1} for user in users],
    }


def test_a_family_of_the_master_s_that_the_workers_have_too_is_summed_with_theirs() -> None:
    first, second = MetricsObserver(), MetricsObserver()
    first.handshake(101, False)
    second.handshake(404, False)
    master = CounterMetricFamily("ws_supervisor_handshakes", "by status", labels=["status"])
    master.add_metric(["404"], 2)
    live = [parse_exposition(o.exposition().decode()) for o in (first, second)]
    text = Metrics().exposition(live, [master])
    assert {
        'ws_supervisor_handshakes_total{status="101"} 1.0',
        'ws_supervisor_handshakes_total{status="404"} 3.0',
    } <= lines(text)
    assert text.decode().count("# TYPE ws_supervisor_handshakes_total counter") == 1


def test_the_daemon_s_state_is_every_worker_s_users_and_node_totals() -> None:
    seats = [
        SeatAnswer(0, 100, "d-w0", 0, True, snapshot(["carol", "alice"], 2)),
        SeatAnswer(1, 101, "d-w1-1", 1, True, snapshot(["bob"], 3, level="warning")),
        SeatAnswer(2, None, "d-w2", 0, False, None, "restarting"),
    ]
    state = merge_states("d", seats)
    assert [(u["user_id"], u["worker"]) for u in every_user(state)] == [
        ("alice", 0),
        ("bob", 1),
        ("carol", 0),
    ]
    root = state["root"]
    assert (root["node_id"], root["node_used"], root["node_limit"], root["slots_held"]) == (
        "d",
        5,
        10000,
        5,
    )
    assert (root["node_level"], root["users"], root["threads"]) == ("warning", 3, 14)
    assert root["levels"] == {"ok": 3}
    assert [a["at"] for a in root["alerts"]] == [2.0, 3.0]
    assert set(state) == {"root", "workers"}  # no user listed twice
    assert state["workers"][1] == {
        "worker_id": 1,
        "pid": 101,
        "node_id": "d-w1-1",
        "restarts": 1,
        "serving": True,
        "root": seats[1].answer["root"],  # type: ignore[index]
        "users": [{"user_id": "bob", "used": 1, "worker": 1}],
    }
    assert state["workers"][2] == {
        "worker_id": 2,
        "pid": None,
        "node_id": "d-w2",
        "restarts": 0,
        "serving": False,
        "error": "restarting",
    }


def test_the_daemon_is_ready_when_every_worker_serves_and_is_ready() -> None:
    ready = {"ready": True}
    assert merge_readiness(False, [SeatAnswer(0, 1, "w0", 0, True, ready)]) == (True, [])
    seats = [
        SeatAnswer(0, 1, "w0", 0, True, {"ready": False, "reasons": ["draining"]}),
        SeatAnswer(1, None, "w1", 0, False, None, None),
        SeatAnswer(2, 3, "w2", 0, True, None, "no answer: TimeoutError"),
        SeatAnswer(3, 4, "w3", 0, True, {"ready": False}),
    ]
    assert merge_readiness(True, seats) == (
        False,
        [
            "draining",
            "worker 0: draining",
            "worker 1: not serving (restarting)",
            "worker 2: no answer: TimeoutError",
            "worker 3: not ready",
        ],
    )
