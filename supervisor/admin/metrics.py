"""Prometheus metrics of the supervision tree, on an explicit registry.

:class:`MetricsObserver` is the :class:`~actors.observer.Observer` the
shell plugs into the tree. No label ever holds a user id, a thread id or any
other unbounded value: every label's values are listed here.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from actors.observer import AdmissionResult, CleanupReason

__all__ = ["LEVELS", "MetricsObserver"]

LEVELS = ("ok", "warning", "critical", "emergency")
_ZEROS = (0,) * len(LEVELS)  # the count of a level no user is at

_FAST_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)


class MetricsObserver:
    """Counts the tree's events into Prometheus metrics; thread-safe."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        self.managers_active = Gauge(
            "ws_supervisor_managers_active", "Connections holding a slot on this node.", registry=r
        )
        self.users_active = Gauge(
            "ws_supervisor_users_active", "Users holding one or more slots.", registry=r
        )
        self.admissions = Counter(
            "ws_supervisor_admissions", "Admission decisions.", ["result"], registry=r
        )
        self.cleanups = Counter(
            "ws_supervisor_cleanups", "Connections cleaned up.", ["reason", "result"], registry=r
        )
        self.cleanup_duration = Histogram(
            "ws_supervisor_cleanup_duration_seconds",
            "From cleanup start to the manager retired.",
            ["reason"],
            buckets=_FAST_BUCKETS,
            registry=r,
        )
        self.release_latency_seconds = Histogram(
            "ws_supervisor_release_latency_seconds",
            "From a close or timeout detected to its slot free.",
            buckets=_FAST_BUCKETS,
            registry=r,
        )
        self.last_release = Gauge(
            "ws_supervisor_last_release_timestamp_seconds",
            "Unix time of the most recent slot release (0 before the first).",
            registry=r,
        )
        self.users_at_level = Gauge(
            "ws_supervisor_users_at_level", "Users per usage level.", ["level"], registry=r
        )
        self.level_changes = Counter(
            "ws_supervisor_level_changes", "Level changes.", ["scope", "level"], registry=r
        )
        self.mismatches = Counter(
            "ws_supervisor_thread_id_mismatches",
            "Releases or cleanups for a key that is not held (must stay 0).",
            registry=r,
        )
        self.restarts = Counter("ws_supervisor_restarts", "Crashed actors restarted.", registry=r)
        self.abandoned_actors = Counter(
            "ws_supervisor_abandoned_actors",
            "Actors or closes abandoned after the cleanup timeout.",
            registry=r,
        )
        self.pool_reuses = Counter(
            "ws_supervisor_pool_reuses", "Pooled managers reused.", registry=r
        )
        self.ledger_up = Gauge(
            "ws_supervisor_ledger_available",
            "1 while the quota ledger answers (always 1 for the memory backend).",
            registry=r,
        )
        self.ledger_errors = Counter(
            "ws_supervisor_ledger_errors",
            "Shared-ledger calls that failed or timed out.",
            ["operation"],
            registry=r,
        )
        self.takebacks = Counter(
            "ws_supervisor_ledger_takebacks",
            "Connections closed because the shared ledger gave their slot away.",
            ["reason"],
            registry=r,
        )
        self.ledger_up.set(1)
        # the usage gauges are read when scraped, from what the last report left here:
        # a report then costs two attribute writes, not two locked sets
        self._managers = self._users = 0
        self._last_release_at = 0.0
        self.managers_active.set_function(lambda: self._managers)
        self.users_active.set_function(lambda: self._users)
        self.last_release.set_function(lambda: self._last_release_at)
        for level in LEVELS:
            self.users_at_level.labels(level).set(0)
        self._level_counts: tuple[int, ...] = (0,) * len(LEVELS)
        # labelled children, looked up once (``labels()`` takes a lock and builds a key each call)
        self._children: dict[tuple[object, ...], Any] = {}

    def _child(self, metric: Any, *labels: str) -> Any:
        key = (metric, *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def admission(self, result: AdmissionResult) -> None:
        self._child(self.admissions, result).inc()

    def cleanup(self, reason: CleanupReason, result: str, duration: float) -> None:
        self._child(self.cleanups, reason, result).inc()
        self._child(self.cleanup_duration, reason).observe(duration)

    def release_latency(self, seconds: float) -> None:
        self.release_latency_seconds.observe(seconds)
        self._last_release_at = time.time()

    def usage(self, managers: int, users: int, levels: Mapping[str, int]) -> None:
        self._managers, self._users = managers, users
        counts = tuple(map(levels.get, LEVELS, _ZEROS))
        if counts != self._level_counts:  # most reports change no level: skip 4 label lookups
            self._level_counts = counts
            for level, count in zip(LEVELS, counts, strict=True):
                self.users_at_level.labels(level).set(count)

    def level_changed(self, scope: str, old: str, new: str) -> None:
        self.level_changes.labels(scope, new).inc()

    def thread_id_mismatch(self) -> None:
        self.mismatches.inc()

    def restart(self) -> None:
        self.restarts.inc()

    def abandoned(self) -> None:
        self.abandoned_actors.inc()

    def pool_reuse(self) -> None:
        self.pool_reuses.inc()

    def ledger_available(self, available: bool) -> None:
        self.ledger_up.set(1 if available else 0)

    def ledger_error(self, operation: str) -> None:
        self.ledger_errors.labels(operation).inc()

    def take_back(self, reason: str) -> None:
        self.takebacks.labels(reason).inc()

    def exposition(self) -> bytes:
        """The Prometheus text format of every metric."""
        return generate_latest(self.registry)

    def value(self, name: str, labels: Mapping[str, str] | None = None) -> float:
        """One sample's current value (0 if never set); for tests and dumps."""
        found = self.registry.get_sample_value(name, dict(labels or {}))
        return 0.0 if found is None else found
