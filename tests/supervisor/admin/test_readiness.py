"""The readiness policy: every rollback trigger, its boundaries and its window."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from actors.clock import ManualClock
from actors.observer import AdmissionResult, Observer
from supervisor.admin.fanout import FanoutObserver
from supervisor.admin.readiness import Readiness


def _readiness(clock: ManualClock, **kwargs: Any) -> Readiness:
    return Readiness(clock, **kwargs)


def _admit(readiness: Readiness, result: AdmissionResult, count: int) -> None:
    for _ in range(count):
        readiness.admission(result)


def test_a_fresh_node_is_ready() -> None:
    assert Readiness(ManualClock()).evaluate() == (True, [])


def test_it_is_an_observer_that_fits_in_a_fanout() -> None:
    readiness = Readiness(ManualClock())
    observer: Observer = readiness
    fanout = FanoutObserver(observer)
    fanout.release_latency(0.1)
    fanout.usage(1, 1, {"ok": 1})
    fanout.level_changed("user", "ok", "warning")
    fanout.restart()
    fanout.abandoned()
    fanout.pool_reuse()
    fanout.cleanup("close", "ok", 99.0)
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
    _admit(readiness, "rejected_unavailable", 1)
    assert readiness.admission_counts() == (19, 20)
    assert readiness.evaluate() == (True, [])
    readiness.admission("rejected_unavailable")  # 19/21 = 0.905
    ready, reasons = readiness.evaluate()
    assert not ready
    assert reasons == ["admission success 0.90 < 0.95 over the last 300s (n=21)"]


@pytest.mark.parametrize("result", ["admitted", "superseded", "evicted"])
def test_admitted_superseded_and_evicted_are_successes(result: AdmissionResult) -> None:
    readiness = Readiness(ManualClock())
    _admit(readiness, result, 25)
    assert readiness.admission_counts() == (25, 25)
    assert readiness.evaluate() == (True, [])


@pytest.mark.parametrize("result", ["rejected_node", "rejected_unavailable"])
def test_node_and_unavailable_rejections_are_failures(result: AdmissionResult) -> None:
    readiness = Readiness(ManualClock())
    _admit(readiness, result, 20)
    assert readiness.admission_counts() == (0, 20)
    assert readiness.evaluate()[0] is False


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
    readiness.cleanup("emergency", "ok", 31.2)
    assert readiness.evaluate() == (False, ["emergency cleanup took 31.2s"])
    clock.advance(299.9)
    assert readiness.evaluate()[0] is False
    clock.advance(0.1)
    assert readiness.evaluate() == (True, [])


def test_an_emergency_cleanup_of_exactly_the_limit_is_fine() -> None:
    readiness = Readiness(ManualClock())
    readiness.cleanup("emergency", "ok", 30.0)
    assert readiness.evaluate() == (True, [])
    readiness.cleanup("emergency", "abandoned", 30.01)
    assert readiness.evaluate() == (False, ["emergency cleanup took 30.0s"])


@pytest.mark.parametrize("reason", ["close", "timeout", "crash", "proactive", "shutdown"])
def test_slow_cleanups_for_other_reasons_do_not_count(reason: str) -> None:
    readiness = Readiness(ManualClock())
    readiness.cleanup(reason, "ok", 120.0)  # type: ignore[arg-type]
    assert readiness.evaluate() == (True, [])


def test_a_later_slow_cleanup_restarts_the_hold() -> None:
    clock = ManualClock()
    readiness = Readiness(clock)
    readiness.cleanup("emergency", "ok", 40.0)
    clock.advance(200)
    readiness.cleanup("emergency", "ok", 35.0)
    clock.advance(200)  # 400 s after the first, 200 s after the second
    assert readiness.evaluate() == (False, ["emergency cleanup took 35.0s"])
    clock.advance(100)
    assert readiness.evaluate() == (True, [])


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


def test_every_reason_is_listed_in_order() -> None:
    readiness = Readiness(ManualClock())
    readiness.set_draining(True)
    _admit(readiness, "rejected_node", 20)
    readiness.cleanup("emergency", "ok", 45.0)
    readiness.thread_id_mismatch()
    assert readiness.evaluate() == (
        False,
        [
            "draining",
            "admission success 0.00 < 0.95 over the last 300s (n=20)",
            "emergency cleanup took 45.0s",
            "thread_id mismatch seen (1)",
        ],
    )


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
