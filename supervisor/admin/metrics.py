"""Prometheus metrics of the supervision tree and the front, on an explicit registry.

:class:`MetricsObserver` is the :class:`~actors.observer.Observer` the
shell plugs into the tree and the :class:`~supervisor.front.server.FrontObserver`
of the front. No label ever holds a user id, a thread id or any other
unbounded value: every label's values are listed here, and every labelled
series is created at 0 from the start, so that Prometheus' ``rate()`` sees
the first event of each and every panel has a series before anything
happened. The registry also carries prometheus_client's process and
platform collectors (open files and their limit, memory, CPU, Python).
"""

from __future__ import annotations

import importlib.metadata
import itertools
import platform
import time
from collections.abc import Callable, Collection, Mapping
from typing import get_args

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)

from actors.codes import ServerCloseCode
from actors.observer import AdmissionResult, CleanupReason
from supervisor.admin.readiness import FAILURE_OUTCOMES, TRIGGERS, refusal_outcome
from supervisor.admin.tally import Tally

__all__ = [
    "CLOSE_CODES",
    "HANDSHAKE_STATUSES",
    "LEDGER_OPERATIONS",
    "LEVELS",
    "MetricsObserver",
    "build_version",
]

LEVELS = ("ok", "warning", "critical", "emergency")
HANDSHAKE_STATUSES = ("101", "400", "401", "403", "404", "426", "429", "500", "503", "dropped")
"""``handshakes_total{status}``: the answers the front gives, ``dropped`` (no answer at
``open_timeout``); any other status counts as ``other``."""
CLOSE_CODES = tuple(str(code) for code in sorted({1000, 1001, 1006, *map(int, ServerCloseCode)}))
"""``closes_total{code}``: the codes the server sends and 1006 (no close handshake); a peer's
own code (3000-4999, or another of RFC 6455) counts as ``other``. A connection the front
sheds (4004, 1008) counts under the code it was shed with, answered or not, and one its
keepalive reaps (aborted) under 4003."""
LEDGER_OPERATIONS = ("acquire", "release", "release_user", "transfer", "renew", "usage", "ping")
"""``ledger_errors_total{operation}``: every call of the Redis ledger that can fail."""
_SCOPES = ("user", "node")
_CLEANUP_RESULTS = ("ok", "abandoned")
_TAKEBACK_REASONS = ("supersede", "evict")
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
_EMERGENCY_BUCKETS = (0.01, 0.1, 1.0, 5.0, 10.0, 15.0, 20.0, 30.0, 60.0, 120.0, 300.0)


def build_version() -> str:
    """The installed ws-supervisor's version, or ``unknown`` (a checkout not installed)."""
    try:
        return importlib.metadata.version("ws-supervisor")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


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
        # what every connection counts: plain numbers, read at scrape (supervisor.admin.tally)
        self._tally = tally = Tally()
        self._lock = tally.lock
        self.admissions = tally.counter(
            "ws_supervisor_admissions",
            "Admission decisions.",
            ["result"],
            ((result,) for result in get_args(AdmissionResult)),
        )
        self.cleanups = tally.counter(
            "ws_supervisor_cleanups",
            "Connections cleaned up.",
            ["reason", "result"],
            itertools.product(get_args(CleanupReason), _CLEANUP_RESULTS),
        )
        self.cleanup_duration = tally.histogram(  # not every series at 0: 17 samples each
            "ws_supervisor_cleanup_duration_seconds",
            "From cleanup start to the manager retired.",
            _FAST_BUCKETS,
            ["reason"],
            series=(),
        )
        self.release_latency_seconds = tally.histogram(
            "ws_supervisor_release_latency_seconds",
            "From a close or timeout detected to its slot free.",
            _FAST_BUCKETS,
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
        self.pool_reuses = tally.counter("ws_supervisor_pool_reuses", "Pooled managers reused.")
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
        self._front_and_process_metrics(r)
        self._create_every_series()
        r.register(tally)
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

    def _front_and_process_metrics(self, r: CollectorRegistry) -> None:
        """The metrics of the front, the node, readiness and the process."""
        tally = self._tally
        self.handshakes = tally.counter(
            "ws_supervisor_handshakes",
            "Opening handshakes whose request was read, by the HTTP status answered.",
            ["status"],
            ((status,) for status in (*HANDSHAKE_STATUSES, "other")),
        )
        self.closes = tally.counter(
            "ws_supervisor_closes",
            "Admitted connections closed, by close code.",
            ["code"],
            ((code,) for code in (*CLOSE_CODES, "other")),
        )
        self.admission_failures = tally.counter(
            "ws_supervisor_admission_failures",
            "Admissions the service failed, by outcome (a user over their own quota is none).",
            ["outcome"],
            ((outcome,) for outcome in FAILURE_OUTCOMES),
        )
        self.emergency_cleanup_seconds = Histogram(
            "ws_supervisor_emergency_cleanup_seconds",
            "A user's emergency cleanup, from its start to the last connection it let go.",
            buckets=_EMERGENCY_BUCKETS,
            registry=r,
        )
        self.node_level = Gauge(
            "ws_supervisor_node_level",
            "The node's usage level: 0 ok, 1 warning, 2 critical, 3 emergency.",
            registry=r,
        )
        self.ready = Gauge(
            "ws_supervisor_ready",
            "1 while this readiness trigger does not hold, 0 while it makes the node not ready.",
            ["trigger"],
            registry=r,
        )
        self.build_info = Gauge(
            "ws_supervisor_build_info",
            "Always 1: the ws-supervisor version and the Python that run.",
            ["version", "python"],
            registry=r,
        )
        self.build_info.labels(build_version(), platform.python_version()).set(1)
        self._triggers_holding: Callable[[], Collection[str]] = tuple
        for trigger in TRIGGERS:
            self.ready.labels(trigger).set_function(self._trigger_reader(trigger))
        # open files and their limit, memory, CPU (Linux /proc); the Python that runs
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)

    def _create_every_series(self) -> None:
        """Every labelled series at 0, so that the first event of each is a visible increase."""
        for scope in _SCOPES:
            for level in LEVELS:
                self.level_changes.labels(scope, level)
        for operation in LEDGER_OPERATIONS:
            self.ledger_errors.labels(operation)
        for reason in _TAKEBACK_REASONS:
            self.takebacks.labels(reason)

    def watch_readiness(self, triggers: Callable[[], Collection[str]]) -> None:
        """Read ``ws_supervisor_ready{trigger}`` from ``triggers()`` (the ids holding) at scrape."""
        self._triggers_holding = triggers

    def _trigger_reader(self, trigger: str) -> Callable[[], float]:
        return lambda: 0.0 if trigger in self._triggers_holding() else 1.0

    def admission(self, result: AdmissionResult) -> None:
        with self._lock:
            self.admissions.add((result,))

    def cleanup(self, reason: CleanupReason, result: str, duration: float) -> None:
        with self._lock:
            self.cleanups.add((reason, result))
            self.cleanup_duration.observe((reason,), duration)

    def release_latency(self, seconds: float) -> None:
        with self._lock:
            self.release_latency_seconds.observe((), seconds)
        self._last_release_at = time.time()

    def usage(self, managers: int, users: int, levels: Mapping[str, int]) -> None:
        self._managers, self._users = managers, users
        counts = tuple(map(levels.get, LEVELS, _ZEROS))
        if counts != self._level_counts:  # most reports change no level: skip 4 label lookups
            self._level_counts = counts
            for level, count in zip(LEVELS, counts, strict=True):
                self.users_at_level.labels(level).set(count)

    def emergency_cleanup(self, seconds: float) -> None:
        self.emergency_cleanup_seconds.observe(seconds)

    def level_changed(self, scope: str, old: str, new: str) -> None:
        self.level_changes.labels(scope, new).inc()
        if scope == "node" and new in LEVELS:
            self.node_level.set(LEVELS.index(new))

    def thread_id_mismatch(self) -> None:
        self.mismatches.inc()

    def restart(self) -> None:
        self.restarts.inc()

    def abandoned(self) -> None:
        self.abandoned_actors.inc()

    def pool_reuse(self) -> None:
        with self._lock:
            self.pool_reuses.add(())

    def ledger_available(self, available: bool) -> None:
        self.ledger_up.set(1 if available else 0)

    def ledger_error(self, operation: str) -> None:
        self.ledger_errors.labels(operation).inc()

    def take_back(self, reason: str) -> None:
        self.takebacks.labels(reason).inc()

    # --- the front's events (the event loop) -----------------------------------------------

    def handshake(self, status: int | None, dropped: bool) -> None:
        label = "dropped" if dropped or status is None else str(status)
        with self._lock:
            self.handshakes.add((label if label in HANDSHAKE_STATUSES else "other",))
            if dropped:
                self.admission_failures.add(("open_timeout",))
            elif status == 500:
                self.admission_failures.add(("internal_error",))

    def refused(self, result: str, reason: str) -> None:
        outcome = refusal_outcome(result, reason)
        if outcome is not None:
            with self._lock:
                self.admission_failures.add((outcome,))

    def closed(self, code: int | None) -> None:
        label = "1006" if code is None else str(code)
        with self._lock:
            self.closes.add((label if label in CLOSE_CODES else "other",))

    def exposition(self) -> bytes:
        """The Prometheus text format of every metric."""
        return generate_latest(self.registry)

    def value(self, name: str, labels: Mapping[str, str] | None = None) -> float:
        """One sample's current value (0 if never set); for tests and dumps."""
        found = self.registry.get_sample_value(name, dict(labels or {}))
        return 0.0 if found is None else found
