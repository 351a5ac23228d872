"""Is this node fit to take traffic? The rollback triggers, as one pure class.

:class:`Readiness` is an :class:`~actors.observer.Observer` and a
:class:`~supervisor.front.server.FrontObserver`: it sits in a
:class:`~supervisor.admin.fanout.FanoutObserver` next to the metrics and
hears the tree's events on actor threads and the front's on the event loop
(hence its lock), and the admin listener asks :meth:`Readiness.triggers` on
the event loop. No threads, no I/O: time comes from the injected
:class:`~actors.clock.Clock`.

The node is not ready while any trigger holds; each has a stable id
(:data:`TRIGGERS`), the label of ``ws_supervisor_ready{trigger}``:

- ``success_rate``: fewer than ``min_success`` of the admissions in the last
  ``window_seconds`` succeeded, judged only once ``min_samples`` are in the
  window. ``admitted``, ``superseded`` and ``evicted`` succeed; every
  admission the service failed fails (:func:`refusal_outcome`,
  :func:`handshake_outcome`: no answer in time, 503 at the node cap or at
  emergency, too many handshakes in progress, a
  handshake dropped at ``open_timeout`` after its request was read, a 500);
  ``rejected_quota`` (429, a user over their own quota) is not counted at
  all, nor is any refusal of a request that never asked for a slot (400,
  401, 403, 404, the per-address 429), nor a refusal because the shared
  ledger is unavailable: ``ledger_unavailable`` below holds while it is, on
  every node alike, and clears as soon as it answers (counted here, one
  failover's refusals kept every node of a cluster not ready for the
  window's 5 minutes after Redis was back);
- ``cleanup_slow``: an emergency cleanup took longer than
  ``max_cleanup_seconds`` (from its start to the last connection it let go,
  :class:`~actors.policies.reaping.EmergencyCleanup`) in the last
  ``window_seconds``;
- ``thread_id_mismatch``: a thread id mismatch was ever seen (sticky until
  the process restarts);
- ``draining``: shutdown has begun (:meth:`Readiness.set_draining`);
- ``ledger_unavailable``: the shared ledger does not answer (the caller
  says so);
- ``tree_stopped``: the supervision tree is not running (the caller says so).
"""

from __future__ import annotations

import collections
import math
import threading
from collections.abc import Mapping
from typing import ClassVar, Literal, get_args

import attrs

from actors.clock import Clock
from actors.observer import AdmissionResult, CleanupReason

__all__ = [
    "FAILURE_OUTCOMES",
    "TRIGGERS",
    "FailureOutcome",
    "Readiness",
    "Trigger",
    "TriggerId",
    "handshake_outcome",
    "refusal_outcome",
]

TriggerId = Literal[
    "success_rate",
    "cleanup_slow",
    "thread_id_mismatch",
    "draining",
    "ledger_unavailable",
    "tree_stopped",
]
TRIGGERS: tuple[TriggerId, ...] = get_args(TriggerId)
"""Every trigger's id, in the order :meth:`Readiness.triggers` lists them."""

FailureOutcome = Literal[
    "timeout",
    "node_cap",
    "emergency",
    "ledger_unavailable",
    "handshakes_busy",
    "open_timeout",
    "internal_error",
    "worker_unavailable",
]
FAILURE_OUTCOMES: tuple[FailureOutcome, ...] = get_args(FailureOutcome)
"""How an admission the service failed ended (``admission_failures_total{outcome}``)."""

_SUCCESSES: frozenset[str] = frozenset({"admitted", "superseded", "evicted"})
_IGNORED: frozenset[str] = frozenset({"rejected_quota", "rejected_unavailable"})
"""Admissions the success rate leaves out: a user over quota, the ledger unavailable.

The tree reports ``rejected_unavailable`` only for the ledger (the caller
counts its own timeout, through :meth:`Readiness.refused`).
"""
_TREE_REPORTED: frozenset[FailureOutcome] = frozenset(
    {"node_cap", "emergency", "ledger_unavailable"}
)
"""Failures the tree reports itself, through :meth:`Readiness.admission`: counted once, there."""


def refusal_outcome(result: str, reason: str) -> FailureOutcome | None:
    """The failure a refused admission counts as; None when it is no failure of the service.

    ``result`` and ``reason`` are the :class:`~actors.ports.Admission`'s,
    or the front's own ``("rejected_busy", ...)`` for a handshake refused at
    ``max_concurrent_handshakes``. ``rejected_quota`` (a user over their
    own quota) is None.
    """
    if result == "rejected_node":
        return "emergency" if reason == "node_emergency" else "node_cap"
    if result == "rejected_unavailable":
        return "ledger_unavailable" if reason == "ledger_unavailable" else "timeout"
    if result == "rejected_busy":
        return "handshakes_busy"
    return None


def handshake_outcome(status: int | None, dropped: bool) -> FailureOutcome | None:
    """The failure an opening handshake that asked for a slot counts as, from how it ended.

    ``dropped``: cancelled before its answer was sent (``open_timeout``);
    ``status``: the HTTP status answered. A 500 is an internal error (an
    exception in the handshake); every other status is counted where it is
    decided (:func:`refusal_outcome`) or is no failure.
    """
    if dropped:
        return "open_timeout"
    if status == 500:
        return "internal_error"
    return None


@attrs.frozen
class Trigger:
    """One reason the node is not ready: its stable id and a sentence for people."""

    id: TriggerId
    reason: str


class Readiness:
    """The readiness policy; thread-safe, every method is fast and never blocks on I/O.

    Admissions are counted in per-second buckets ``[second, ok, total]``; a
    bucket leaves the window once ``window_seconds`` have passed since its
    second began, so at most ``ceil(window_seconds) + 1`` buckets are kept
    whatever the admission rate.
    """

    ignores: ClassVar[frozenset[str]] = frozenset(
        {"cleanup", "release_latency", "usage", "level_changed", "restart", "abandoned"}
        | {"pool_reuse", "closed"}
    )
    """The events that are no readiness signal, whose methods do nothing: a fanout skips them."""

    def __init__(
        self,
        clock: Clock,
        window_seconds: float = 300.0,
        min_success: float = 0.95,
        max_cleanup_seconds: float = 30.0,
        min_samples: int = 20,
    ) -> None:
        if window_seconds <= 0:
            raise ValueError(f"window_seconds must be > 0, got {window_seconds}")
        if not 0.0 <= min_success <= 1.0:
            raise ValueError(f"min_success must be in [0, 1], got {min_success}")
        if min_samples < 1:
            raise ValueError(f"min_samples must be >= 1, got {min_samples}")
        self.clock = clock
        self.window_seconds = window_seconds
        self.min_success = min_success
        self.max_cleanup_seconds = max_cleanup_seconds
        self.min_samples = min_samples
        self._lock = threading.Lock()
        self._buckets: collections.deque[list[int]] = collections.deque(
            maxlen=math.ceil(window_seconds) + 2
        )
        self._slow_cleanup: tuple[float, float] | None = None  # (monotonic at, duration)
        self._mismatches = 0
        self._draining = False

    # --- the tree's events (any actor thread) ----------------------------------------------

    def admission(self, result: AdmissionResult) -> None:
        """Count one admission the tree decided; ``rejected_quota`` and the ledger's are not."""
        if result in _IGNORED:
            return
        self._count(result in _SUCCESSES)

    def emergency_cleanup(self, seconds: float) -> None:
        """Remember an emergency cleanup slower than ``max_cleanup_seconds``."""
        if seconds <= self.max_cleanup_seconds:
            return
        with self._lock:
            self._slow_cleanup = (self.clock.monotonic(), seconds)

    def thread_id_mismatch(self) -> None:
        """A release for a key that is not held: not ready until restart."""
        with self._lock:
            self._mismatches += 1

    def cleanup(self, reason: CleanupReason, result: str, duration: float) -> None:
        """Not a readiness signal: one connection's cleanup (see :meth:`emergency_cleanup`)."""

    def release_latency(self, seconds: float) -> None:
        """Not a readiness signal."""

    def usage(self, managers: int, users: int, levels: Mapping[str, int]) -> None:
        """Not a readiness signal."""

    def level_changed(self, scope: str, old: str, new: str) -> None:
        """Not a readiness signal."""

    def restart(self) -> None:
        """Not a readiness signal."""

    def abandoned(self) -> None:
        """Not a readiness signal."""

    def pool_reuse(self) -> None:
        """Not a readiness signal."""

    # --- the front's events (the event loop) -----------------------------------------------

    def handshake(self, status: int | None, dropped: bool) -> None:
        """An opening handshake that asked for a slot ended: count it if the service failed it."""
        if handshake_outcome(status, dropped) is not None:
            self._count(False)

    def refused(self, result: str, reason: str) -> None:
        """The front refused an admission: count the failures the tree did not report itself.

        The tree reports its own refusals (:meth:`admission`); the front's
        are the ones no actor saw: no answer in time, too many handshakes.
        """
        outcome = refusal_outcome(result, reason)
        if outcome is not None and outcome not in _TREE_REPORTED:
            self._count(False)

    def closed(self, code: int | None) -> None:
        """Not a readiness signal."""

    # --- the shell's side -----------------------------------------------------------------

    def set_draining(self, draining: bool) -> None:
        """Mark the node as draining (shutdown has begun) or not."""
        with self._lock:
            self._draining = draining

    def admission_counts(self) -> tuple[int, int]:
        """``(successes, counted admissions)`` in the current window."""
        with self._lock:
            self._expire(self.clock.monotonic())
            return self._counts()

    def triggers(
        self, *, tree_running: bool = True, ledger_unavailable: str | None = None
    ) -> list[Trigger]:
        """Every trigger that holds, in :data:`TRIGGERS` order; [] exactly when ready.

        ``tree_running`` and ``ledger_unavailable`` (why the shared ledger
        is unavailable, or None) are what the caller sees of the tree and
        of Redis.
        """
        now = self.clock.monotonic()
        found: list[Trigger] = []
        with self._lock:
            self._expire(now)
            ok, total = self._counts()
            if total >= self.min_samples and ok / total < self.min_success:
                found.append(
                    Trigger(
                        "success_rate",
                        f"admission success {ok / total:.2f} < {self.min_success:.2f}"
                        f" over the last {self.window_seconds:g}s (n={total})",
                    )
                )
            if self._slow_cleanup is not None:
                at, duration = self._slow_cleanup
                if now - at < self.window_seconds:
                    found.append(Trigger("cleanup_slow", f"emergency cleanup took {duration:.1f}s"))
                else:
                    self._slow_cleanup = None
            if self._mismatches:
                found.append(
                    Trigger("thread_id_mismatch", f"thread_id mismatch seen ({self._mismatches})")
                )
            if self._draining:
                found.append(Trigger("draining", "draining"))
        if ledger_unavailable is not None:
            found.append(Trigger("ledger_unavailable", ledger_unavailable))
        if not tree_running:
            found.append(Trigger("tree_stopped", "supervision tree not running"))
        return found

    def evaluate(self) -> tuple[bool, list[str]]:
        """``(ready, reasons)`` from this policy alone; ``reasons`` is empty exactly when ready."""
        reasons = [trigger.reason for trigger in self.triggers()]
        return not reasons, reasons

    # --- internals ------------------------------------------------------------------------

    def _count(self, ok: bool) -> None:
        now = self.clock.monotonic()
        second = math.floor(now)
        with self._lock:
            self._expire(now)
            if self._buckets and self._buckets[-1][0] == second:
                bucket = self._buckets[-1]
                bucket[1] += ok
                bucket[2] += 1
            else:
                self._buckets.append([second, int(ok), 1])

    def _expire(self, now: float) -> None:  # lock held
        horizon = now - self.window_seconds
        while self._buckets and self._buckets[0][0] <= horizon:
            self._buckets.popleft()

    def _counts(self) -> tuple[int, int]:  # lock held
        ok = sum(bucket[1] for bucket in self._buckets)
        total = sum(bucket[2] for bucket in self._buckets)
        return ok, total
