"""Several observers as one: the tree reports once, each observer hears it."""

from __future__ import annotations

from collections.abc import Mapping

from actors.observer import AdmissionResult, CleanupReason, Observer

__all__ = ["FanoutObserver"]


class FanoutObserver:
    """Passes every event to each observer in turn (metrics, readiness, ...)."""

    def __init__(self, *observers: Observer) -> None:
        self.observers = observers

    def admission(self, result: AdmissionResult) -> None:
        for observer in self.observers:
            observer.admission(result)

    def cleanup(self, reason: CleanupReason, result: str, duration: float) -> None:
        for observer in self.observers:
            observer.cleanup(reason, result, duration)

    def release_latency(self, seconds: float) -> None:
        for observer in self.observers:
            observer.release_latency(seconds)

    def usage(self, managers: int, users: int, levels: Mapping[str, int]) -> None:
        for observer in self.observers:
            observer.usage(managers, users, levels)

    def level_changed(self, scope: str, old: str, new: str) -> None:
        for observer in self.observers:
            observer.level_changed(scope, old, new)

    def thread_id_mismatch(self) -> None:
        for observer in self.observers:
            observer.thread_id_mismatch()

    def restart(self) -> None:
        for observer in self.observers:
            observer.restart()

    def abandoned(self) -> None:
        for observer in self.observers:
            observer.abandoned()

    def pool_reuse(self) -> None:
        for observer in self.observers:
            observer.pool_reuse()
