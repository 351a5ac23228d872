"""The fan-out observer: every event the tree reports reaches every observer, in order."""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

import pytest

from actors.observer import AdmissionResult, CleanupReason, NullObserver, Observer
from actors.tree import SupervisionTree
from supervisor.admin.fanout import FanoutObserver
from supervisor.admin.metrics import MetricsObserver
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


def events_of(cls: type) -> set[str]:
    return {name for name, _ in inspect.getmembers(cls, inspect.isfunction) if name[0] != "_"}


def test_the_calls_here_are_every_call_of_the_observer_protocol() -> None:
    assert {name for name, _ in CALLS} == events_of(Observer)
    assert events_of(FanoutObserver) == events_of(Observer)


@pytest.mark.parametrize(("event", "args"), CALLS, ids=[name for name, _ in CALLS])
def test_every_observer_call_reaches_every_observer_in_the_order_given(
    event: str, args: tuple[Any, ...]
) -> None:
    heard: Heard = []
    fanout = FanoutObserver(Recorder("first", heard), Recorder("second", heard))
    getattr(fanout, event)(*args)
    assert heard == [("first", event, args), ("second", event, args)]


def test_a_fanout_of_no_observer_hears_everything_and_does_nothing() -> None:
    fanout = FanoutObserver()
    for event, args in CALLS:
        getattr(fanout, event)(*args)
    assert fanout.observers == ()


def test_a_tree_reporting_to_a_fanout_reaches_the_metrics_and_every_other_observer() -> None:
    metrics, heard = MetricsObserver(), Heard()
    observer: Observer = FanoutObserver(metrics, Recorder("other", heard), NullObserver())
    tree = SupervisionTree(make_config(), observer=observer).start()
    try:
        admission, _, _ = connect(tree, "alice")
        assert admission.admitted
    finally:
        tree.stop()
    assert metrics.value("ws_supervisor_admissions_total", {"result": "admitted"}) == 1
    assert ("other", "admission", ("admitted",)) in heard
    assert ("other", "cleanup", ("shutdown", "ok")) in [(n, e, a[:2]) for n, e, a in heard]
