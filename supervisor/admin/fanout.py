"""Several observers as one: the tree or the front reports once, each observer hears it."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from actors.observer import AdmissionResult, CleanupReason, Observer
from supervisor.front.server import FrontObserver

__all__ = ["FanoutObserver", "NodeObserver"]


class NodeObserver(Observer, FrontObserver, Protocol):
    """Hears both the tree's events and the front's (metrics, readiness)."""


class FanoutObserver:
    """Passes every event to each observer in turn (metrics, readiness, ...).

    The tree's events come on actor threads, the front's on the event loop;
    each observer is called on the thread that reports. An observer may
    name the events it does nothing with (a class attribute ``ignores``):
    it is not called for them. An event that only one observer hears is
    that observer's own method, called directly (most events of a
    connection: the metrics', not the readiness'): no call through here.
    """

    def __init__(self, *observers: NodeObserver) -> None:
        self.observers = observers
        for event in _EVENTS:
            hearing = [o for o in observers if event not in getattr(o, "ignores", ())]
            if len(hearing) == 1:
                setattr(self, event, getattr(hearing[0], event))
            elif len(hearing) < len(observers):
                setattr(self, event, functools.partial(_each, [getattr(o, event) for o in hearing]))

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


def _each(listeners: list[Callable[..., None]], *args: Any) -> None:
    for listener in listeners:
        listener(*args)


_EVENTS = sorted(
    name
    for name, value in vars(FanoutObserver).items()
    if callable(value) and not name.startswith("_")
)
"""Every event a fanout passes on (its public methods)."""
