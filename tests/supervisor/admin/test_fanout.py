"""The fan-out observer: every event of the tree or the front reaches every observer, in order."""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

import pytest

from actors.observer import AdmissionResult, CleanupReason, Observer
from actors.tree import SupervisionTree
from supervisor.admin.fanout import FanoutObserver
from supervisor.admin.metrics import MetricsObserver
from supervisor.front.server import FrontObserver
from tests.helpers import connect, make_config

Heard = list[tuple[str, str, tuple[Any, ...]]]

CALLS: list[tuple[str, tuple[Any, ...]]] = [
    ("admission", ("admitted",)),
    ("cleanup", ("timeout", "ok", 0.25)),
    ("release_latency", (0.001,)),
    ("usage", (3, 2, {"ok": 1, "warning": 1})),
    ("level_changed", ("user", "ok", "warning")),
    ("thread_id_mismatch", ()),
    ("restart", ()),
    ("abandoned", ()),
    ("pool_reuse", ()),
    ("emergency_cleanup", (31.5,)),
]

FRONT_CALLS: list[tuple[str, tuple[Any, ...]]] = [
    ("handshake", (101, False)),
    ("refused", ("rejected_busy", "handshakes_in_progress")),
    ("closed", (1000,)),
]


class Recorder:
    """An observer that writes what it hears, under its name, to a log shared with others."""

    def __init__(self, name: str, heard: Heard) -> None:
        self.name = name
        self.heard = heard

    def _note(self, event: str, *args: Any) -> None:
        self.heard.append((self.name, event, args))

    def admission(self, result: AdmissionResult) -> None:
        self._note("admission", result)

    def cleanup(self, reason: CleanupReason, result: str, duration: float) -> None:
        self._note("cleanup", reason, result, duration)

    def release_latency(self, seconds: float) -> None:
        self._note("release_latency", seconds)

    def usage(self, managers: int, users: int, levels: Mapping[str, int]) -> None:
        self._note("usage", managers, users, levels)

    def level_changed(self, scope: str, old: str, new: str) -> None:
        self._note("level_changed", scope, old, new)

    def thread_id_mismatch(self) -> None:
        self._note("thread_id_mismatch")

    def restart(self) -> None:
        self._note("restart")

    def abandoned(self) -> None:
        self._note("abandoned")

    def pool_reuse(self) -> None:
        self._note("pool_reuse")

    def emergency_cleanup(self, seconds: float) -> None:
        self._note("emergency_cleanup", seconds)

    def handshake(self, status: int | None, dropped: bool) -> None:
        self._note("handshake", status, dropped)

    def refused(self, result: str, reason: str) -> None:
        self._note("refused", result, reason)

    def closed(self, code: int | None) -> None:
        self._note("closed", code)


def events_of(cls: type) -> set[str]:
    return {name for name, _ in inspect.getmembers(cls, inspect.isfunction) if name[0] != "_"}


def test_the_calls_here_are_every_call_of_the_tree_s_and_the_front_s_observer_protocols() -> None:
    assert {name for name, _ in CALLS} == events_of(Observer)
    assert {name for name, _ in FRONT_CALLS} == events_of(FrontObserver)
    assert events_of(FanoutObserver) == events_of(Observer) | events_of(FrontObserver)


@pytest.mark.parametrize(
    ("event", "args"), CALLS + FRONT_CALLS, ids=[name for name, _ in CALLS + FRONT_CALLS]
)
def test_every_observer_call_reaches_every_observer_in_the_order_given(
    event: str, args: tuple[Any, ...]
) -> None:
    heard: Heard = []
    fanout = FanoutObserver(Recorder("first", heard), Recorder("second", heard))
    getattr(fanout, event)(*args)
    assert heard == [("first", event, args), ("second", event, args)]


def test_a_fanout_of_no_observer_hears_everything_and_does_nothing() -> None:
    fanout = FanoutObserver()
    for event, args in CALLS + FRONT_CALLS:
        getattr(fanout, event)(*args)
    assert fanout.observers == ()


def test_a_tree_reporting_to_a_fanout_reaches_the_metrics_and_every_other_observer() -> None:
    metrics, heard = MetricsObserver(), Heard()
    observer: Observer = FanoutObserver(metrics, Recorder("other", heard))
    tree = SupervisionTree(make_config(), observer=observer).start()
    try:
        admission, _, _ = connect(tree, "alice")
        assert admission.admitted
    finally:
        tree.stop()
    assert metrics.value("ws_supervisor_admissions_total", {"result": "admitted"}) == 1
    assert ("other", "admission", ("admitted",)) in heard
    assert ("other", "cleanup", ("shutdown", "ok")) in [(n, e, a[:2]) for n, e, a in heard]


class Deaf(Recorder):
    """A recorder that names the events it does nothing with, as the readiness policy does."""

    ignores = frozenset({"cleanup", "closed"})


@pytest.mark.parametrize("order", ["deaf first", "deaf last"])
def test_an_event_an_observer_ignores_reaches_the_others_only_and_one_alone_is_called_directly(
    order: str,
) -> None:
    heard: Heard = []
    deaf, first, second = Deaf("deaf", heard), Recorder("first", heard), Recorder("second", heard)
    alone = FanoutObserver(deaf, first) if order == "deaf first" else FanoutObserver(first, deaf)
    both = FanoutObserver(deaf, first, second)
    for fanout in (alone, both):
        for event, args in CALLS + FRONT_CALLS:
            getattr(fanout, event)(*args)
    names = {event: [n for n, e, _ in heard if e == event] for event, _ in CALLS + FRONT_CALLS}
    assert names["cleanup"] == names["closed"] == ["first", "first", "second"]
    assert names["admission"] == (
        ["deaf", "first"] if order == "deaf first" else ["first", "deaf"]
    ) + ["deaf", "first", "second"]
    assert alone.cleanup == first.cleanup  # the observer's own method: no call in between
