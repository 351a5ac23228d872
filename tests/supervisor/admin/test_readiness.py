"""The readiness policy: every rollback trigger, its boundaries and its window."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from actors.clock import ManualClock
from actors.observer import AdmissionResult
from supervisor.admin.fanout import FanoutObserver, NodeObserver
from supervisor.admin.readiness import (
    TRIGGERS,
    Readiness,
    handshake_outcome,
    refusal_outcome,
)


def _readiness(clock: ManualClock, **kwargs: Any) -> Readiness:
    return Readiness(clock, **kwargs)


def _admit(readiness: Readiness, result: AdmissionResult, count: int) -> None:
    for _ in range(count):
        readiness.admission(result)


def test_a_fresh_node_is_ready() -> None:
    assert Readiness(ManualClock()).evaluate() == (True, [])


def test_it_is_an_observer_that_fits_in_a_fanout() -> None:
    readiness = Readiness(ManualClock())
    observer: NodeObserver = readiness
    fanout = FanoutObserver(observer)
    fanout.release_latency(0.1)
    fanout.usage(1, 1, {"ok": 1})
    fanout.level_changed("user", "ok", "warning")
    fanout.restart()
    fanout.abandoned()
    fanout.pool_reuse()
    fanout.cleanup("emergency", "abandoned", 99.0)
    fanout.emergency_cleanup(1.0)
    fanout.handshake(101, False)
    fanout.refused("rejected_quota", "quota_full")
    fanout.closed(1000)
    assert readiness.evaluate() == (True, [])
    fanout.thread_id_mismatch()
    assert readiness.evaluate()[0] is False


# --- draining -------------------------------------------------------------------------------


def test_draining_makes_the_node_not_ready_and_undraining_restores_it() -> None:
    readiness = Readiness(ManualClock())
    readiness.set_draining(True)
    assert readiness.evaluate() == (False, ["draining"])
    readiness.set_draining(False)
    assert readiness.evaluate() == (True, [])


# --- admission success ----------------------------------------------------------------------


def test_success_below_the_minimum_makes_the_node_not_ready() -> None:
    readiness = Readiness(ManualClock())
    _admit(readiness, "admitted", 32)
    _admit(readiness, "rejected_node", 8)
    assert readiness.evaluate() == (
        False,
        ["admission success 0.80 < 0.95 over the last 300s (n=40)"],
    )


def test_success_exactly_at_the_minimum_is_ready() -> None:
    readiness = Readiness(ManualClock())
    _admit(readiness, "admitted", 19)
    _admit(readiness, "rejected_node", 1)
    assert readiness.admission_counts() == (19, 20)
    assert readiness.evaluate() == (True, [])
    readiness.admission("rejected_node")  # 19/21 = 0.905
    ready, reasons = readiness.evaluate()
    assert not ready
    assert reasons == ["admission success 0.90 < 0.95 over the last 300s (n=21)"]


@pytest.mark.parametrize("result", ["admitted", "superseded", "evicted"])
def test_admitted_superseded_and_evicted_are_successes(result: AdmissionResult) -> None:
    readiness = Readiness(ManualClock())
    _admit(readiness, result, 25)
    assert readiness.admission_counts() == (25, 25)
    assert readiness.evaluate() == (True, [])


def test_node_rejections_are_failures() -> None:
    readiness = Readiness(ManualClock())
    _admit(readiness, "rejected_node", 20)
    assert readiness.admission_counts() == (0, 20)
    assert readiness.evaluate()[0] is False


def test_the_ledger_s_refusals_are_left_to_its_own_trigger_and_leave_no_trace_once_it_answers() -> (
    None
):
    readiness = Readiness(ManualClock())
    _admit(readiness, "admitted", 20)
    _admit(readiness, "rejected_unavailable", 100)  # a failover under fail_closed
    down = readiness.triggers(ledger_unavailable="redis ledger unavailable (fail_closed)")
    assert [trigger.id for trigger in down] == ["ledger_unavailable"]
    assert readiness.admission_counts() == (20, 20)
    assert readiness.triggers() == []  # back as soon as the ledger answers


def test_quota_rejections_are_not_counted_at_all() -> None:
    readiness = Readiness(ManualClock())
    _admit(readiness, "rejected_quota", 1_000)
    assert readiness.admission_counts() == (0, 0)
    _admit(readiness, "admitted", 20)
    _admit(readiness, "rejected_quota", 1_000)
    assert readiness.admission_counts() == (20, 20)
    assert readiness.evaluate() == (True, [])


def test_success_is_not_judged_below_min_samples() -> None:
    readiness = Readiness(ManualClock())
    _admit(readiness, "rejected_node", 19)
    assert readiness.evaluate() == (True, [])
    readiness.admission("rejected_node")
    assert readiness.evaluate() == (
        False,
        ["admission success 0.00 < 0.95 over the last 300s (n=20)"],
    )


def test_min_samples_and_thresholds_are_configurable() -> None:
    readiness = _readiness(ManualClock(), window_seconds=60.0, min_success=0.5, min_samples=4)
    _admit(readiness, "admitted", 2)
    _admit(readiness, "rejected_node", 2)
    assert readiness.evaluate() == (True, [])
    readiness.admission("rejected_node")
    assert readiness.evaluate() == (
        False,
        ["admission success 0.40 < 0.50 over the last 60s (n=5)"],
    )


def test_failures_leave_the_window_and_the_node_recovers() -> None:
    clock = ManualClock(start=1_000.0)
    readiness = Readiness(clock)
    _admit(readiness, "rejected_node", 20)  # second 1000
    clock.advance(299.999)
    assert readiness.evaluate()[0] is False
    clock.advance(0.001)  # 300 s after the bucket's second began: out of the window
    assert readiness.admission_counts() == (0, 0)
    assert readiness.evaluate() == (True, [])


def test_the_window_slides_one_second_at_a_time() -> None:
    clock = ManualClock(start=1_000.0)
    readiness = _readiness(clock, window_seconds=10.0, min_samples=1)
    readiness.admission("rejected_node")  # second 1000
    clock.advance(5)
    _admit(readiness, "admitted", 19)  # second 1005
    assert readiness.admission_counts() == (19, 20)
    assert readiness.evaluate() == (True, [])
    clock.advance(5)  # now 1010: the failure's bucket has left
    assert readiness.admission_counts() == (19, 19)
    clock.advance(5)  # now 1015: everything has left
    assert readiness.admission_counts() == (0, 0)


def test_memory_stays_bounded_whatever_the_rate() -> None:
    clock = ManualClock()
    readiness = _readiness(clock, window_seconds=10.0)
    for _ in range(1_000):
        _admit(readiness, "admitted", 50)
        clock.advance(0.25)
    assert len(readiness._buckets) <= 11
    assert readiness.admission_counts()[1] <= 11 * 4 * 50


# --- slow emergency cleanups ----------------------------------------------------------------


def test_a_slow_emergency_cleanup_holds_not_ready_for_the_window() -> None:
    clock = ManualClock()
    readiness = Readiness(clock)
    readiness.emergency_cleanup(31.2)
    assert readiness.evaluate() == (False, ["emergency cleanup took 31.2s"])
    assert [trigger.id for trigger in readiness.triggers()] == ["cleanup_slow"]
    clock.advance(299.9)
    assert readiness.evaluate()[0] is False
    clock.advance(0.1)
    assert readiness.evaluate() == (True, [])


def test_an_emergency_cleanup_of_exactly_the_limit_is_fine() -> None:
    readiness = Readiness(ManualClock())
    readiness.emergency_cleanup(30.0)
    assert readiness.evaluate() == (True, [])
    readiness.emergency_cleanup(30.01)
    assert readiness.evaluate() == (False, ["emergency cleanup took 30.0s"])


@pytest.mark.parametrize(
    "reason", ["close", "timeout", "crash", "proactive", "emergency", "evict", "shutdown"]
)
def test_one_connection_s_cleanup_is_no_readiness_signal_whatever_its_reason(reason: str) -> None:
    readiness = Readiness(ManualClock())
    readiness.cleanup(reason, "abandoned", 120.0)  # type: ignore[arg-type]
    assert readiness.evaluate() == (True, [])


def test_a_later_slow_cleanup_restarts_the_hold() -> None:
    clock = ManualClock()
    readiness = Readiness(clock)
    readiness.emergency_cleanup(40.0)
    clock.advance(200)
    readiness.emergency_cleanup(35.0)
    clock.advance(200)  # 400 s after the first, 200 s after the second
    assert readiness.evaluate() == (False, ["emergency cleanup took 35.0s"])
    clock.advance(100)
    assert readiness.evaluate() == (True, [])


# --- the front's failures -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("result", "reason", "outcome"),
    [
        ("rejected_node", "node_emergency", "emergency"),
        ("rejected_node", "node_full", "node_cap"),
        ("rejected_unavailable", "ledger_unavailable", "ledger_unavailable"),
        ("rejected_unavailable", "no answer in time", "timeout"),
        ("rejected_busy", "handshakes_in_progress", "handshakes_busy"),
        ("rejected_quota", "quota_full", None),
    ],
)
def test_each_refusal_counts_as_its_outcome_and_a_full_user_quota_as_none(
    result: str, reason: str, outcome: str | None
) -> None:
    assert refusal_outcome(result, reason) == outcome


@pytest.mark.parametrize(
    ("status", "dropped", "outcome"),
    [
        (None, True, "open_timeout"),
        (500, False, "internal_error"),
        (101, False, None),
        (503, False, None),  # counted where it is decided: refusal_outcome
        (429, False, None),
        (404, False, None),
        (401, False, None),
    ],
)
def test_a_handshake_counts_as_a_failure_only_when_dropped_or_answered_500(
    status: int | None, dropped: bool, outcome: str | None
) -> None:
    assert handshake_outcome(status, dropped) == outcome


@pytest.mark.parametrize(
    ("result", "reason"),
    [("rejected_unavailable", "no answer in time"), ("rejected_busy", "handshakes_in_progress")],
)
def test_failures_only_the_front_saw_count_against_the_success_rate(
    result: str, reason: str
) -> None:
    readiness = Readiness(ManualClock())
    _admit(readiness, "admitted", 18)
    readiness.refused(result, reason)
    readiness.refused(result, reason)
    assert readiness.admission_counts() == (18, 20)
    assert [trigger.id for trigger in readiness.triggers()] == ["success_rate"]


@pytest.mark.parametrize(
    ("result", "reason"),
    [
        ("rejected_node", "node_full"),
        ("rejected_node", "node_emergency"),
        ("rejected_unavailable", "ledger_unavailable"),
        ("rejected_quota", "quota_full"),
    ],
)
def test_refusals_the_tree_reported_itself_or_of_a_full_user_quota_are_not_counted_again(
    result: str, reason: str
) -> None:
    readiness = Readiness(ManualClock())
    readiness.refused(result, reason)
    assert readiness.admission_counts() == (0, 0)


def test_dropped_and_500_handshakes_count_as_failures_and_other_answers_do_not() -> None:
    readiness = Readiness(ManualClock())
    readiness.handshake(None, True)
    readiness.handshake(500, False)
    for status in (101, 400, 401, 403, 404, 429, 503):
        readiness.handshake(status, False)
    readiness.closed(1006)
    assert readiness.admission_counts() == (0, 2)


def test_forty_handshakes_of_which_nineteen_timed_out_make_the_node_not_ready() -> None:
    """The issue's measurement: 19 of 40 answered 503 "no answer in time" left /readyz at 200."""
    readiness = Readiness(ManualClock())
    _admit(readiness, "admitted", 21)
    for _ in range(19):
        readiness.refused("rejected_unavailable", "no answer in time")
    assert readiness.evaluate() == (
        False,
        ["admission success 0.53 < 0.95 over the last 300s (n=40)"],
    )


# --- thread id mismatches ---------------------------------------------------------------------


def test_a_thread_id_mismatch_is_sticky() -> None:
    clock = ManualClock()
    readiness = Readiness(clock)
    readiness.thread_id_mismatch()
    readiness.thread_id_mismatch()
    assert readiness.evaluate() == (False, ["thread_id mismatch seen (2)"])
    clock.advance(10_000)
    _admit(readiness, "admitted", 100)
    assert readiness.evaluate() == (False, ["thread_id mismatch seen (2)"])


# --- all together -----------------------------------------------------------------------------


def test_every_trigger_is_listed_in_order_with_its_id() -> None:
    readiness = Readiness(ManualClock())
    readiness.set_draining(True)
    _admit(readiness, "rejected_node", 20)
    readiness.emergency_cleanup(45.0)
    readiness.thread_id_mismatch()
    found = readiness.triggers(tree_running=False, ledger_unavailable="redis ledger unavailable")
    assert [(trigger.id, trigger.reason) for trigger in found] == [
        ("success_rate", "admission success 0.00 < 0.95 over the last 300s (n=20)"),
        ("cleanup_slow", "emergency cleanup took 45.0s"),
        ("thread_id_mismatch", "thread_id mismatch seen (1)"),
        ("draining", "draining"),
        ("ledger_unavailable", "redis ledger unavailable"),
        ("tree_stopped", "supervision tree not running"),
    ]
    assert tuple(trigger.id for trigger in found) == TRIGGERS
    assert readiness.evaluate() == (False, [trigger.reason for trigger in found[:4]])


def test_concurrent_observers_lose_no_admission() -> None:
    readiness = Readiness(ManualClock())

    def admit_many() -> None:
        _admit(readiness, "admitted", 2_000)

    threads = [threading.Thread(target=admit_many) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert readiness.admission_counts() == (8_000, 8_000)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"window_seconds": 0.0}, "window_seconds must be > 0"),
        ({"min_success": 1.5}, "min_success must be in [0, 1]"),
        ({"min_samples": 0}, "min_samples must be >= 1"),
    ],
)
def test_bad_parameters_are_refused(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        _readiness(ManualClock(), **kwargs)
