"""Is this node fit to take traffic? The rollback triggers, as one pure class.

:class:`Readiness` is an :class:`~actors.observer.Observer`: it sits in a
:class:`~supervisor.admin.fanout.FanoutObserver` next to the metrics and
hears the tree's events on actor threads (hence its lock), and the admin
listener asks :meth:`Readiness.evaluate` on the event loop. No threads, no
I/O: time comes from the injected :class:`~actors.clock.Clock`.

The node is not ready while any of these holds:

- it is draining (:meth:`Readiness.set_draining`);
- fewer than ``min_success`` of the admissions in the last ``window_seconds``
  succeeded, judged only once ``min_samples`` admissions are in the window.
  ``admitted``, ``superseded`` and ``evicted`` succeed; ``rejected_node`` and
  ``rejected_unavailable`` fail; ``rejected_quota`` is not counted at all (a
  user over their own quota is not a failure of the service);
- an emergency cleanup took longer than ``max_cleanup_seconds`` in the last
  ``window_seconds``;
- a thread id mismatch was ever seen (sticky until the process restarts).
"""

from __future__ import annotations

import collections
import math
import threading
from collections.abc import Mapping

from actors.clock import Clock
from actors.observer import AdmissionResult, CleanupReason

__all__ = ["Readiness"]

_SUCCESSES: frozenset[str] = frozenset({"admitted", "superseded", "evicted"})
_IGNORED: frozenset[str] = frozenset({"rejected_quota"})


class Readiness:
    """The readiness policy; thread-safe, every method is fast and never blocks on I/O.

    Admissions are counted in per-second buckets ``[second, ok, total]``; a
    bucket leaves the window once ``window_seconds`` have passed since its
    second began, so at most ``ceil(window_seconds) + 1`` buckets are kept
    whatever the admission rate.
    """

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

    # --- the observer protocol ------------------------------------------------------------

    def admission(self, result: AdmissionResult) -> None:
        """Count one admission (any actor thread); ``rejected_quota`` is ignored."""
        if result in _IGNORED:
            return
        ok = 1 if result in _SUCCESSES else 0
        now = self.clock.monotonic()
        second = math.floor(now)
        with self._lock:
            self._expire(now)
            if self._buckets and self._buckets[-1][0] == second:
                bucket = self._buckets[-1]
                bucket[1] += ok
                bucket[2] += 1
            else:
                self._buckets.append([second, ok, 1])

    def cleanup(self, reason: CleanupReason, result: str, duration: float) -> None:
        """Remember an emergency cleanup slower than ``max_cleanup_seconds``."""
        if reason != "emergency" or duration <= self.max_cleanup_seconds:
            return
        with self._lock:
            self._slow_cleanup = (self.clock.monotonic(), duration)

    def thread_id_mismatch(self) -> None:
        """A release for a key that is not held: not ready until restart."""
        with self._lock:
            self._mismatches += 1

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

    def evaluate(self) -> tuple[bool, list[str]]:
        """``(ready, reasons)``; ``reasons`` is empty exactly when ready."""
        now = self.clock.monotonic()
        reasons: list[str] = []
        with self._lock:
            self._expire(now)
            if self._draining:
                reasons.append("draining")
            ok, total = self._counts()
            if total >= self.min_samples and ok / total < self.min_success:
                reasons.append(
                    f"admission success {ok / total:.2f} < {self.min_success:.2f}"
                    f" over the last {self.window_seconds:g}s (n={total})"
                )
            if self._slow_cleanup is not None:
                at, duration = self._slow_cleanup
                if now - at < self.window_seconds:
                    reasons.append(f"emergency cleanup took {duration:.1f}s")
                else:
                    self._slow_cleanup = None
            if self._mismatches:
                reasons.append(f"thread_id mismatch seen ({self._mismatches})")
        return not reasons, reasons

    # --- internals (lock held) ------------------------------------------------------------

    def _expire(self, now: float) -> None:
        horizon = now - self.window_seconds
        while self._buckets and self._buckets[0][0] <= horizon:
            self._buckets.popleft()

    def _counts(self) -> tuple[int, int]:
        ok = sum(bucket[1] for bucket in self._buckets)
        total = sum(bucket[2] for bucket in self._buckets)
        return ok, total
