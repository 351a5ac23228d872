"""Several observers as one: the tree or the front reports once, each observer hears it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from actors.observer import AdmissionResult, CleanupReason, Observer
from supervisor.front.server import FrontObserver

__all__ = ["FanoutObserver", "NodeObserver"]


class NodeObserver(Observer, FrontObserver, Protocol):
    """Hears both the tree's events and the front's (metrics, readiness)."""


class FanoutObserver:
    """Passes every event to each observer in turn (metrics, readiness, ...).

    The tree's events come on actor threads, the front's on the event loop;
    each observer is called on the thread that reports.
    """

    def __init__(self, *observers: NodeObserver) -> None:
        self.observers = observers

    def admission(self, result: AdmissionResult) -> None:
        for observer in self.observers:
            observer.admission(result)

    def cleanup(self, reason: CleanupReason, result: str, duration: float) -> None:
        for observer in self.observers:
            observer.cleanup(reason, result, duration)

    def emergency_cleanup(self, seconds: float) -> None:
        for observer in self.observers:
            observer.emergency_cleanup(seconds)

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

    def handshake(self, status: int | None, dropped: bool) -> None:
        for observer in self.observers:
            observer.handshake(status, dropped)

    def refused(self, result: str, reason: str) -> None:
        for observer in self.observers:
            observer.refused(result, reason)

    def closed(self, code: int | None) -> None:
        for observer in self.observers:
            observer.closed(code)
