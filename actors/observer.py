"""What the supervision tree reports as it works: the observer protocol.

The actors call an :class:`Observer` for every event worth counting; the shell
plugs in :class:`supervisor.admin.metrics.MetricsObserver` (Prometheus) and the
actors stay free of any metrics library. Every method may be called from any
actor thread at any time, so implementations must be thread-safe and fast.
No argument is ever a user id: labels stay bounded.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal, Protocol

__all__ = [
    "AdmissionResult",
    "CleanupReason",
    "NullObserver",
    "Observer",
]

AdmissionResult = Literal[
    "admitted", "superseded", "evicted", "rejected_quota", "rejected_node", "rejected_unavailable"
]
"""How an admission ended: ``superseded`` and ``evicted`` are admissions that
closed another connection of the same user first; ``rejected_unavailable`` is
an admission that got no answer in time."""

CleanupReason = Literal[
    "close", "timeout", "crash", "proactive", "emergency", "supersede", "evict", "shutdown"
]
"""Why a connection's slot was freed."""


class Observer(Protocol):
    """Receives the tree's events; see the module docstring for the rules."""

    def admission(self, result: AdmissionResult) -> None:
        """One admission decision was made and handed to its caller.

        An answer that finds its caller gone (it gave up waiting) is not
        reported: the caller counts its own timeout.
        """

    def cleanup(self, reason: CleanupReason, result: str, duration: float) -> None:
        """One connection was cleaned up; ``result`` is ``ok`` or ``abandoned``."""

    def emergency_cleanup(self, seconds: float) -> None:
        """A user's emergency cleanup ended: seconds from its start to the last connection let go.

        Its start is the root's decision (critical: reap the connections no
        longer live; emergency: shed); its end the last connection it reaped
        closed or abandoned (:class:`~actors.policies.reaping.EmergencyCleanup`).
        """

    def release_latency(self, seconds: float) -> None:
        """Seconds from a close or timeout being detected to its slot being free."""

    def usage(self, managers: int, users: int, levels: Mapping[str, int]) -> None:
        """Node totals: live managers, users with one or more, and users per level."""

    def level_changed(self, scope: str, old: str, new: str) -> None:
        """A user (``scope="user"``) or the node (``scope="node"``) changed level."""

    def thread_id_mismatch(self) -> None:
        """A release or cleanup named a key that is not held; must never happen."""

    def restart(self) -> None:
        """A crashed actor was restarted."""

    def abandoned(self) -> None:
        """An actor that would not stop in time was abandoned."""

    def pool_reuse(self) -> None:
        """A pooled manager was reused for a new connection."""


class NullObserver:
    """An observer that ignores everything."""

    def admission(self, result: AdmissionResult) -> None:
        pass

    def cleanup(self, reason: CleanupReason, result: str, duration: float) -> None:
        pass

    def emergency_cleanup(self, seconds: float) -> None:
        pass

    def release_latency(self, seconds: float) -> None:
        pass

    def usage(self, managers: int, users: int, levels: Mapping[str, int]) -> None:
        pass

    def level_changed(self, scope: str, old: str, new: str) -> None:
        pass

    def thread_id_mismatch(self) -> None:
        pass

    def restart(self) -> None:
        pass

    def abandoned(self) -> None:
        pass

    def pool_reuse(self) -> None:
        pass
