"""The daemon's answers made of its workers' (pure): metrics, state and readiness.

Metrics: each worker's exposition is parsed with prometheus-client's own
parser and every sample is combined with the same sample of the other
workers (same name, same labels): summed, except the families whose name
ends in ``_created`` (the earliest), ``_timestamp_seconds`` (the latest),
:data:`LOWEST` (the lowest: the daemon's ledger is up, and a readiness
trigger clear, only if on every worker) and :data:`HIGHEST` (the highest:
the worst node level; an info gauge stays 1). Counters and histograms
outlive a worker that dies: its last values read are carried
(:meth:`Metrics.carry`) into every later sum, so that a restarted worker
counting again from 0 never makes a daemon's total go back, which
Prometheus would read as a reset. Gauges (connections, users) are the live
workers' only.

State: node totals in ``root``, and ``workers``, one entry per worker (its
pid, node id, restarts, its own root and users, or why it did not answer);
the users of the workers are disjoint (a user lives on one worker).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import attrs
from prometheus_client import CollectorRegistry, generate_latest, parser
from prometheus_client.core import Metric

__all__ = [
    "HIGHEST",
    "LOWEST",
    "Family",
    "Metrics",
    "SeatAnswer",
    "merge_readiness",
    "merge_states",
    "parse_exposition",
]

LOWEST = frozenset(
    {
        "ws_supervisor_ledger_available",
        "ws_supervisor_ready",
        "process_max_fds",
        "process_start_time_seconds",
    }
)
"""Gauges whose daemon value is the lowest of the workers'.

The ledger is up, and a readiness trigger clear (1), only if it is so on
every worker; the open-file limit is the tightest worker's (with
:data:`HIGHEST`'s open files, ``process_open_fds / process_max_fds`` is
the worker closest to its limit, which is what the alert must see).
"""

HIGHEST = frozenset(
    {"ws_supervisor_node_level", "ws_supervisor_build_info", "python_info", "process_open_fds"}
)
"""Gauges whose daemon value is the highest of the workers': the worst level, an info's 1."""

_CUMULATIVE = frozenset({"counter", "histogram", "summary"})
_ALERTS_KEPT = 50
_LEVELS = ("ok", "warning", "critical", "emergency")

SampleKey = tuple[str, tuple[tuple[str, str], ...]]


@attrs.frozen
class Family:
    """One metric family of an exposition: its type, help text and samples by key."""

    type: str
    documentation: str
    samples: dict[SampleKey, float]


Exposition = dict[str, Family]


def parse_exposition(text: str) -> Exposition:
    """Every family of a Prometheus text exposition, by name, in order."""
    families: Exposition = {}
    for family in parser.text_string_to_metric_families(text):
        samples = {(s.name, tuple(sorted(s.labels.items()))): s.value for s in family.samples}
        families[family.name] = Family(family.type, family.documentation, samples)
    return families


def _combine(family: str, old: float, new: float) -> float:
    if family.endswith("_created") or family in LOWEST:
        return min(old, new)
    if family.endswith("_timestamp_seconds") or family in HIGHEST:
        return max(old, new)
    return old + new


def _merge(expositions: Iterable[Exposition]) -> Exposition:
    merged: Exposition = {}
    for exposition in expositions:
        for name, family in exposition.items():
            into = merged.setdefault(name, Family(family.type, family.documentation, {}))
            for key, value in family.samples.items():
                old = into.samples.get(key)
                into.samples[key] = value if old is None else _combine(name, old, value)
    return merged


class _Collector:
    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterator[Metric]:
        return iter(self._families)


class Metrics:
    """The daemon's metrics: the live workers' summed, plus what dead workers counted.

    Used on the master's loop only.
    """

    def __init__(self) -> None:
        self.carried: Exposition = {}

    def carry(self, last: Exposition) -> None:
        """A worker died: keep the counters and histograms it had when last read."""
        cumulative = {name: f for name, f in last.items() if f.type in _CUMULATIVE}
        self.carried = _merge([self.carried, cumulative])

    def merge(self, live: Sequence[Exposition]) -> Exposition:
        """The live workers' expositions and the carried counts, as one."""
        return _merge([*live, self.carried])

    def exposition(self, live: Sequence[Exposition], extra: Iterable[Metric] = ()) -> bytes:
        """The Prometheus text of :meth:`merge` and the ``extra`` families (the master's).

        A family of the master's that the workers have too (the handshakes
        it answered itself) is combined with theirs, sample by sample.
        """
        own: Exposition = {}
        for metric in extra:
            samples = {(s.name, tuple(sorted(s.labels.items()))): s.value for s in metric.samples}
            own[metric.name] = Family(metric.type, metric.documentation, samples)
        families = []
        for name, family in _merge([*live, self.carried, own]).items():
            metric = Metric(name, family.documentation, family.type)
            for (sample, labels), value in family.samples.items():
                metric.add_sample(sample, dict(labels), value)
            families.append(metric)
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Collector(families))
        return generate_latest(registry)


@attrs.frozen
class SeatAnswer:
    """What the master knows of one worker, and its answer to an admin request."""

    index: int
    pid: int | None
    node_id: str
    restarts: int
    serving: bool
    answer: dict[str, Any] | None = None
    error: str | None = None


def merge_states(daemon_id: str, seats: Sequence[SeatAnswer]) -> dict[str, Any]:
    """``/debug/state`` of the daemon: node totals in ``root``, and ``workers``.

    Each worker is ``{"worker_id", "pid", "node_id", "restarts", "serving",
    "root", "users"}`` (its own tree's root and users, each user tagged with
    its ``worker``), or ``{"worker_id", ..., "error"}`` when it did not
    answer: the shape the live page (``/ui``) and ``ws-supervisor dump``
    read. A user lives on one worker, so no user is listed twice.
    """
    workers: list[dict[str, Any]] = []
    roots: list[dict[str, Any]] = []
    for seat in seats:
        entry: dict[str, Any] = {
            "worker_id": seat.index,
            "pid": seat.pid,
            "node_id": seat.node_id,
            "restarts": seat.restarts,
            "serving": seat.serving and seat.answer is not None,
        }
        if seat.answer is None:
            entry["error"] = seat.error or "no answer"
        else:
            root = seat.answer.get("root", {})
            roots.append(root)
            users = [{**user, "worker": seat.index} for user in seat.answer.get("users", [])]
            users.sort(key=lambda user: str(user.get("user_id", "")))
            entry.update({"root": root, "users": users})
        workers.append(entry)
    return {"root": _node_root(daemon_id, roots), "workers": workers}


_SUMMED = ("node_used", "node_limit", "users", "slots_held", "threads", "supervisor_restarts")


def _node_root(daemon_id: str, roots: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    root: dict[str, Any] = dict(roots[0]) if roots else {}
    root["node_id"] = daemon_id
    for key in _SUMMED:
        root[key] = sum(int(r.get(key, 0) or 0) for r in roots)
    levels: dict[str, int] = {}
    for r in roots:
        for level, count in r.get("levels", {}).items():
            levels[level] = levels.get(level, 0) + int(count)
    root["levels"] = levels
    worst = max(
        (_LEVELS.index(r["node_level"]) for r in roots if r.get("node_level") in _LEVELS), default=0
    )
    root["node_level"] = _LEVELS[worst]
    alerts = [a for r in roots for a in r.get("alerts", [])]
    alerts.sort(key=lambda alert: float(alert.get("at", 0) or 0))
    root["alerts"] = alerts[-_ALERTS_KEPT:]
    return root


def merge_readiness(draining: bool, seats: Sequence[SeatAnswer]) -> tuple[bool, list[str]]:
    """``/readyz`` of the daemon: ready when not draining and every worker is.

    A worker that is down or restarting makes the daemon not ready (its
    users would be refused); each worker's own reasons are named after it.
    """
    reasons = ["draining"] if draining else []
    for seat in seats:
        if not seat.serving:
            reasons.append(f"worker {seat.index}: not serving ({seat.error or 'restarting'})")
        elif seat.answer is None:
            reasons.append(f"worker {seat.index}: {seat.error or 'no answer'}")
        elif not seat.answer.get("ready", False):
            own = seat.answer.get("reasons") or ["not ready"]
            reasons += [f"worker {seat.index}: {reason}" for reason in own]
    return not reasons, reasons
