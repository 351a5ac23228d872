"""The Prometheus observer, each on its own registry."""

from __future__ import annotations

import time
from typing import get_args

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from actors.observer import AdmissionResult, CleanupReason, Observer
from supervisor.admin.metrics import LEVELS, MetricsObserver

METRIC_NAMES = (
    "ws_supervisor_managers_active",
    "ws_supervisor_users_active",
    "ws_supervisor_admissions_total",
    "ws_supervisor_cleanups_total",
    "ws_supervisor_cleanup_duration_seconds",
    "ws_supervisor_release_latency_seconds",
    "ws_supervisor_last_release_timestamp_seconds",
    "ws_supervisor_users_at_level",
    "ws_supervisor_thread_id_mismatches_total",
    "ws_supervisor_restarts_total",
    "ws_supervisor_abandoned_actors_total",
    "ws_supervisor_pool_reuses_total",
    "ws_supervisor_handshakes_total",
    "ws_supervisor_closes_total",
    "ws_supervisor_admission_failures_total",
    "ws_supervisor_emergency_cleanup_seconds",
    "ws_supervisor_node_level",
    "ws_supervisor_ready",
    "ws_supervisor_build_info",
    "process_open_fds",
    "process_max_fds",
    "process_resident_memory_bytes",
    "process_cpu_seconds_total",
    "python_info",
)

LABEL_NAMES = {
    "result",
    "reason",
    "level",
    "scope",
    "le",
    "operation",
    "status",
    "code",
    "outcome",
    "trigger",
    "version",  # build_info and python_info
    "python",
    "implementation",  # python_info
    "major",
    "minor",
    "patchlevel",
}
""" Every label name exposed; each one's values are listed in supervisor/admin/metrics.py."""

FORBIDDEN_LABELS = {"user_id", "thread_id", "isolation_key", "websocket_id"}


@pytest.fixture
def observer() -> MetricsObserver:
    return MetricsObserver(CollectorRegistry())


def exercise(observer: MetricsObserver) -> None:
    """Call every observer method at least once, with every label value."""
    for result in get_args(AdmissionResult):
        observer.admission(result)
    for reason in get_args(CleanupReason):
        observer.cleanup(reason, "ok", 0.01)
        observer.cleanup(reason, "abandoned", 5.0)
    observer.release_latency(0.002)
    observer.usage(3, 2, {"ok": 1, "critical": 1})
    observer.level_changed("user", "ok", "warning")
    observer.level_changed("node", "warning", "critical")
    observer.thread_id_mismatch()
    observer.restart()
    observer.abandoned()
    observer.pool_reuse()
    observer.emergency_cleanup(31.0)
    for status in (101, 400, 401, 403, 404, 426, 429, 500, 503, 418):
        observer.handshake(status, False)
    observer.handshake(None, True)
    for result, reason in (("rejected_busy", ""), ("rejected_unavailable", "no answer in time")):
        observer.refused(result, reason)
    for code in (1000, 1001, None, 1008, 4001, 4002, 4003, 4004, 3001):
        observer.closed(code)


def test_the_observer_uses_the_registry_it_is_given() -> None:
    registry = CollectorRegistry()
    assert MetricsObserver(registry).registry is registry


def test_the_observer_satisfies_the_observer_protocol(observer: MetricsObserver) -> None:
    typed: Observer = observer
    typed.restart()
    assert observer.value("ws_supervisor_restarts_total") == 1.0


@pytest.mark.parametrize("result", get_args(AdmissionResult))
def test_an_admission_counts_under_its_result(
    observer: MetricsObserver, result: AdmissionResult
) -> None:
    observer.admission(result)
    observer.admission(result)
    assert observer.value("ws_supervisor_admissions_total", {"result": result}) == 2.0
    others = [other for other in get_args(AdmissionResult) if other != result]
    for other in others:
        assert observer.value("ws_supervisor_admissions_total", {"result": other}) == 0.0


def test_an_admitted_connection_moves_the_admissions_counter(observer: MetricsObserver) -> None:
    assert observer.value("ws_supervisor_admissions_total", {"result": "admitted"}) == 0.0
    observer.admission("admitted")
    assert observer.value("ws_supervisor_admissions_total", {"result": "admitted"}) == 1.0


def test_a_cleanup_counts_under_its_reason_and_result_and_times_the_cleanup(
    observer: MetricsObserver,
) -> None:
    observer.cleanup("timeout", "ok", 0.003)
    observer.cleanup("timeout", "abandoned", 6.0)
    observer.cleanup("close", "ok", 0.001)
    assert (
        observer.value("ws_supervisor_cleanups_total", {"reason": "timeout", "result": "ok"}) == 1
    )
    assert (
        observer.value("ws_supervisor_cleanups_total", {"reason": "timeout", "result": "abandoned"})
        == 1
    )
    assert observer.value("ws_supervisor_cleanups_total", {"reason": "close", "result": "ok"}) == 1
    timeout = {"reason": "timeout"}
    assert observer.value("ws_supervisor_cleanup_duration_seconds_count", timeout) == 2
    assert observer.value("ws_supervisor_cleanup_duration_seconds_sum", timeout) == pytest.approx(
        6.003
    )
    assert (
        observer.value("ws_supervisor_cleanup_duration_seconds_bucket", {**timeout, "le": "0.005"})
        == 1
    )
    assert observer.value("ws_supervisor_cleanup_duration_seconds_count", {"reason": "close"}) == 1


def test_a_release_latency_is_observed(observer: MetricsObserver) -> None:
    observer.release_latency(0.002)
    observer.release_latency(0.3)
    assert observer.value("ws_supervisor_release_latency_seconds_count") == 2
    assert observer.value("ws_supervisor_release_latency_seconds_sum") == pytest.approx(0.302)
    assert observer.value("ws_supervisor_release_latency_seconds_bucket", {"le": "0.0025"}) == 1
    assert observer.value("ws_supervisor_release_latency_seconds_bucket", {"le": "+Inf"}) == 2


def test_a_release_stamps_the_time_of_the_last_release(observer: MetricsObserver) -> None:
    assert observer.value("ws_supervisor_last_release_timestamp_seconds") == 0
    before = time.time()
    observer.release_latency(0.002)
    stamped = observer.value("ws_supervisor_last_release_timestamp_seconds")
    assert stamped is not None and before <= stamped <= time.time()


def test_usage_sets_the_gauges_and_every_level(observer: MetricsObserver) -> None:
    observer.usage(7, 3, {"ok": 1, "warning": 2})
    assert observer.value("ws_supervisor_managers_active") == 7
    assert observer.value("ws_supervisor_users_active") == 3
    assert observer.value("ws_supervisor_users_at_level", {"level": "ok"}) == 1
    assert observer.value("ws_supervisor_users_at_level", {"level": "warning"}) == 2
    assert observer.value("ws_supervisor_users_at_level", {"level": "critical"}) == 0
    observer.usage(1, 1, {"emergency": 1})
    assert observer.value("ws_supervisor_managers_active") == 1
    assert observer.value("ws_supervisor_users_active") == 1
    assert observer.value("ws_supervisor_users_at_level", {"level": "warning"}) == 0
    assert observer.value("ws_supervisor_users_at_level", {"level": "emergency"}) == 1


def test_every_level_is_exposed_from_the_start(observer: MetricsObserver) -> None:
    for level in LEVELS:
        found = observer.registry.get_sample_value("ws_supervisor_users_at_level", {"level": level})
        assert found == 0.0


def test_a_level_change_counts_under_its_scope_and_new_level(observer: MetricsObserver) -> None:
    observer.level_changed("user", "ok", "warning")
    observer.level_changed("user", "critical", "warning")
    observer.level_changed("node", "ok", "critical")
    changes = "ws_supervisor_level_changes_total"
    assert observer.value(changes, {"scope": "user", "level": "warning"}) == 2
    assert observer.value(changes, {"scope": "node", "level": "critical"}) == 1
    assert observer.value(changes, {"scope": "user", "level": "ok"}) == 0


def test_a_thread_id_mismatch_is_counted(observer: MetricsObserver) -> None:
    observer.thread_id_mismatch()
    assert observer.value("ws_supervisor_thread_id_mismatches_total") == 1


def test_a_restart_is_counted(observer: MetricsObserver) -> None:
    observer.restart()
    observer.restart()
    assert observer.value("ws_supervisor_restarts_total") == 2


def test_an_abandoned_actor_is_counted(observer: MetricsObserver) -> None:
    observer.abandoned()
    assert observer.value("ws_supervisor_abandoned_actors_total") == 1


def test_a_pool_reuse_is_counted(observer: MetricsObserver) -> None:
    observer.pool_reuse()
    assert observer.value("ws_supervisor_pool_reuses_total") == 1


def test_a_sample_never_set_reads_as_zero(observer: MetricsObserver) -> None:
    assert observer.value("ws_supervisor_restarts_total") == 0.0
    assert observer.value("ws_supervisor_no_such_metric") == 0.0
    assert observer.value("ws_supervisor_admissions_total", {"result": "admitted"}) == 0.0


def test_the_exposition_names_every_metric(observer: MetricsObserver) -> None:
    text = observer.exposition().decode()
    for name in METRIC_NAMES:
        assert name in text, name


def test_the_exposition_names_every_metric_after_use(observer: MetricsObserver) -> None:
    exercise(observer)
    text = observer.exposition().decode()
    sample_names = {
        sample.name for family in text_string_to_metric_families(text) for sample in family.samples
    }
    for name in METRIC_NAMES:
        assert any(sample.startswith(name) for sample in sample_names), name


def test_no_label_in_the_exposition_holds_a_user_or_connection_id(
    observer: MetricsObserver,
) -> None:
    exercise(observer)
    text = observer.exposition().decode()
    label_names = {
        label
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        for label in sample.labels
    }
    assert label_names
    assert not label_names & FORBIDDEN_LABELS
    assert label_names <= LABEL_NAMES


def test_two_observers_on_two_registries_do_not_share_values() -> None:
    first = MetricsObserver(CollectorRegistry())
    second = MetricsObserver(CollectorRegistry())
    first.admission("admitted")
    first.restart()
    first.usage(5, 2, {"ok": 2})
    assert first.value("ws_supervisor_admissions_total", {"result": "admitted"}) == 1
    assert second.value("ws_supervisor_admissions_total", {"result": "admitted"}) == 0
    assert second.value("ws_supervisor_restarts_total") == 0
    assert second.value("ws_supervisor_managers_active") == 0
    assert second.value("ws_supervisor_users_at_level", {"level": "ok"}) == 0
    second.restart()
    second.restart()
    assert first.value("ws_supervisor_restarts_total") == 1
    assert second.value("ws_supervisor_restarts_total") == 2


def test_an_observer_without_a_registry_gets_its_own() -> None:
    first = MetricsObserver()
    second = MetricsObserver()
    assert first.registry is not second.registry
    first.pool_reuse()
    assert second.value("ws_supervisor_pool_reuses_total") == 0
