"""The Prometheus observer's metrics of the front, the node, readiness and the process."""

from __future__ import annotations

import platform
import resource
from typing import get_args

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from actors.observer import AdmissionResult, CleanupReason
from supervisor.admin.metrics import (
    CLOSE_CODES,
    HANDSHAKE_STATUSES,
    LEDGER_OPERATIONS,
    MetricsObserver,
    build_version,
)
from supervisor.admin.readiness import FAILURE_OUTCOMES, TRIGGERS


@pytest.fixture
def observer() -> MetricsObserver:
    return MetricsObserver(CollectorRegistry())


def samples(observer: MetricsObserver, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """Every sample named ``name``: its labels (sorted) to its value."""
    text = observer.exposition().decode()
    return {
        tuple(sorted(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    }


# --- every series from the start -------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "label", "values"),
    [
        ("ws_supervisor_admissions_total", "result", get_args(AdmissionResult)),
        ("ws_supervisor_handshakes_total", "status", (*HANDSHAKE_STATUSES, "other")),
        ("ws_supervisor_closes_total", "code", (*CLOSE_CODES, "other")),
        ("ws_supervisor_admission_failures_total", "outcome", FAILURE_OUTCOMES),
        ("ws_supervisor_ledger_errors_total", "operation", LEDGER_OPERATIONS),
        ("ws_supervisor_ledger_takebacks_total", "reason", ("supersede", "evict")),
        ("ws_supervisor_ready", "trigger", TRIGGERS),
    ],
)
def test_every_labelled_series_is_exposed_at_its_initial_value_before_any_event(
    observer: MetricsObserver, name: str, label: str, values: tuple[str, ...]
) -> None:
    found = samples(observer, name)
    assert {dict(labels)[label] for labels in found} == set(values)
    initial = 1.0 if name == "ws_supervisor_ready" else 0.0
    assert set(found.values()) == {initial}


def test_every_cleanup_and_level_change_series_is_exposed_at_zero(
    observer: MetricsObserver,
) -> None:
    cleanups = samples(observer, "ws_supervisor_cleanups_total")
    assert len(cleanups) == len(get_args(CleanupReason)) * 2
    changes = samples(observer, "ws_supervisor_level_changes_total")
    assert {(dict(k)["scope"], dict(k)["level"]) for k in changes} == {
        (scope, level)
        for scope in ("user", "node")
        for level in ("ok", "warning", "critical", "emergency")
    }
    assert set(cleanups.values()) == set(changes.values()) == {0.0}


# --- handshakes, failures, closes -------------------------------------------------------------


def test_a_handshake_counts_under_the_status_answered(observer: MetricsObserver) -> None:
    observer.handshake(101, False)
    observer.handshake(101, False)
    observer.handshake(429, False)
    assert observer.value("ws_supervisor_handshakes_total", {"status": "101"}) == 2
    assert observer.value("ws_supervisor_handshakes_total", {"status": "429"}) == 1
    assert observer.value("ws_supervisor_admission_failures_total", {"outcome": "timeout"}) == 0


def test_a_status_not_listed_counts_as_other_so_labels_stay_bounded(
    observer: MetricsObserver,
) -> None:
    for status in (418, 405, 999):
        observer.handshake(status, False)
    assert observer.value("ws_supervisor_handshakes_total", {"status": "other"}) == 3
    assert len(samples(observer, "ws_supervisor_handshakes_total")) == len(HANDSHAKE_STATUSES) + 1


def test_a_dropped_handshake_is_counted_and_is_an_open_timeout_failure(
    observer: MetricsObserver,
) -> None:
    observer.handshake(None, True)
    assert observer.value("ws_supervisor_handshakes_total", {"status": "dropped"}) == 1
    failures = {"outcome": "open_timeout"}
    assert observer.value("ws_supervisor_admission_failures_total", failures) == 1


def test_a_500_is_an_internal_error_failure(observer: MetricsObserver) -> None:
    observer.handshake(500, False)
    failures = {"outcome": "internal_error"}
    assert observer.value("ws_supervisor_admission_failures_total", failures) == 1


@pytest.mark.parametrize(
    ("result", "reason", "outcome"),
    [
        ("rejected_unavailable", "no answer in time", "timeout"),
        ("rejected_unavailable", "ledger_unavailable", "ledger_unavailable"),
        ("rejected_node", "node_full", "node_cap"),
        ("rejected_node", "node_emergency", "emergency"),
        ("rejected_busy", "handshakes_in_progress", "handshakes_busy"),
    ],
)
def test_every_refusal_the_service_failed_counts_under_its_outcome(
    observer: MetricsObserver, result: str, reason: str, outcome: str
) -> None:
    observer.refused(result, reason)
    found = samples(observer, "ws_supervisor_admission_failures_total")
    assert {dict(labels)["outcome"]: value for labels, value in found.items() if value} == {
        outcome: 1.0
    }


def test_a_user_over_their_own_quota_is_no_failure(observer: MetricsObserver) -> None:
    observer.refused("rejected_quota", "quota_full")
    assert set(samples(observer, "ws_supervisor_admission_failures_total").values()) == {0.0}


@pytest.mark.parametrize(
    ("code", "label"),
    [(1000, "1000"), (1001, "1001"), (None, "1006"), (1006, "1006"), (4004, "4004")],
)
def test_a_close_counts_under_its_code(
    observer: MetricsObserver, code: int | None, label: str
) -> None:
    observer.closed(code)
    assert observer.value("ws_supervisor_closes_total", {"code": label}) == 1


@pytest.mark.parametrize("code", [3000, 3999, 4999, 1002, 1007])
def test_a_peer_s_own_close_code_counts_as_other(observer: MetricsObserver, code: int) -> None:
    observer.closed(code)
    assert observer.value("ws_supervisor_closes_total", {"code": "other"}) == 1


def test_the_close_codes_are_the_server_s_and_no_close_handshake() -> None:
    assert CLOSE_CODES == (
        "1000",
        "1001",
        "1006",
        "1008",
        "1009",
        "1011",
        "1012",
        "1013",
        "4001",
        "4002",
        "4003",
        "4004",
    )


# --- the node, readiness, the build, the process --------------------------------------------


def test_an_emergency_cleanup_is_timed_in_its_own_histogram(observer: MetricsObserver) -> None:
    observer.emergency_cleanup(31.0)
    observer.emergency_cleanup(2.0)
    assert observer.value("ws_supervisor_emergency_cleanup_seconds_count") == 2
    assert observer.value("ws_supervisor_emergency_cleanup_seconds_bucket", {"le": "30.0"}) == 1


def test_the_node_level_follows_the_node_s_level_changes_only(observer: MetricsObserver) -> None:
    assert observer.value("ws_supervisor_node_level") == 0
    observer.level_changed("node", "ok", "critical")
    assert observer.value("ws_supervisor_node_level") == 2
    observer.level_changed("user", "ok", "emergency")
    assert observer.value("ws_supervisor_node_level") == 2
    observer.level_changed("node", "critical", "emergency")
    assert observer.value("ws_supervisor_node_level") == 3
    observer.level_changed("node", "emergency", "ok")
    assert observer.value("ws_supervisor_node_level") == 0


def test_each_trigger_reads_0_while_it_holds_and_1_otherwise(observer: MetricsObserver) -> None:
    holding: set[str] = set()
    observer.watch_readiness(lambda: holding)
    assert set(samples(observer, "ws_supervisor_ready").values()) == {1.0}
    holding.update({"thread_id_mismatch", "draining"})
    ready = {dict(k)["trigger"]: v for k, v in samples(observer, "ws_supervisor_ready").items()}
    assert ready == {trigger: 0.0 if trigger in holding else 1.0 for trigger in TRIGGERS}


def test_build_info_names_the_version_and_the_python_that_run(observer: MetricsObserver) -> None:
    labels = {"version": build_version(), "python": platform.python_version()}
    assert observer.value("ws_supervisor_build_info", labels) == 1
    assert len(samples(observer, "ws_supervisor_build_info")) == 1
    assert build_version() != "unknown"  # the checkout is installed in .venv


def test_the_process_collector_exposes_open_files_against_their_limit(
    observer: MetricsObserver,
) -> None:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    open_fds = observer.value("process_open_fds")
    assert 3 <= open_fds <= soft
    assert observer.value("process_max_fds") == soft
    assert observer.value("process_resident_memory_bytes") > 1_000_000
    assert observer.value("process_cpu_seconds_total") > 0
    assert observer.value("python_info", _python_info()) == 1


def _python_info() -> dict[str, str]:
    major, minor, patchlevel = platform.python_version_tuple()
    return {
        "implementation": platform.python_implementation(),
        "major": major,
        "minor": minor,
        "patchlevel": patchlevel,
        "version": platform.python_version(),
    }
