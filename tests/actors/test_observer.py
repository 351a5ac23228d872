"""The observer protocol: NullObserver implements it, and no event ever names a user."""

from __future__ import annotations

import inspect
import threading
from collections.abc import Callable
from typing import Any, get_args

import pytest

from actors.clock import ManualClock
from actors.context import UserExecutionContext
from actors.observer import AdmissionResult, CleanupReason, NullObserver, Observer
from actors.tree import SupervisionTree, echo_handler
from tests.helpers import connect, handle_of, make_config, wait_until

PROTOCOL_METHODS = sorted(
    name
    for name, member in vars(Observer).items()
    if inspect.isfunction(member) and not name.startswith("_")
)


def test_the_protocol_has_a_method_for_each_event() -> None:
    assert PROTOCOL_METHODS == [
        "abandoned",
        "admission",
        "cleanup",
        "emergency_cleanup",
        "level_changed",
        "pool_reuse",
        "release_latency",
        "restart",
        "thread_id_mismatch",
        "usage",
    ]


@pytest.mark.parametrize("name", PROTOCOL_METHODS)
def test_the_null_observer_has_every_method_of_the_protocol_with_its_signature(
    name: str,
) -> None:
    ours = getattr(NullObserver, name)
    assert inspect.signature(ours) == inspect.signature(getattr(Observer, name))


def test_the_null_observer_ignores_every_event() -> None:
    observer: Observer = NullObserver()
    observer.admission("admitted")
    observer.cleanup("close", "ok", 0.1)
    observer.release_latency(0.1)
    observer.usage(1, 1, {"ok": 1})
    observer.level_changed("user", "ok", "warning")
    observer.thread_id_mismatch()
    observer.restart()
    observer.abandoned()
    observer.pool_reuse()
    observer.emergency_cleanup(31.0)
    assert vars(observer) == {}


class Recording:
    """An observer that records every call with its arguments."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        self._lock = threading.Lock()

    def _record(self, name: str, *args: Any) -> None:
        with self._lock:
            self.calls.append((name, args))

    def admission(self, result: AdmissionResult) -> None:
        self._record("admission", result)

    def cleanup(self, reason: CleanupReason, result: str, duration: float) -> None:
        self._record("cleanup", reason, result, duration)

    def release_latency(self, seconds: float) -> None:
        self._record("release_latency", seconds)

    def usage(self, managers: int, users: int, levels: Any) -> None:
        self._record("usage", managers, users, dict(levels))

    def level_changed(self, scope: str, old: str, new: str) -> None:
        self._record("level_changed", scope, old, new)

    def thread_id_mismatch(self) -> None:
        self._record("thread_id_mismatch")

    def restart(self) -> None:
        self._record("restart")

    def abandoned(self) -> None:
        self._record("abandoned")

    def pool_reuse(self) -> None:
        self._record("pool_reuse")

    def emergency_cleanup(self, seconds: float) -> None:
        self._record("emergency_cleanup", seconds)


def crash_on_boom(context: UserExecutionContext, text: str, send: Callable[[str], None]) -> None:
    if text == "boom":
        raise RuntimeError("boom")
    echo_handler(context, text, send)


def test_no_event_of_a_busy_tree_carries_a_user_id_and_every_label_is_a_documented_one() -> None:
    user = "user-7f3a9c"
    observer = Recording()
    config = make_config({"quota": {"max_managers_per_user": 2, "policy": "reject"}})
    with SupervisionTree(
        config,
        clock=ManualClock(),
        observer=observer,
        tick=False,
        handler_factory=lambda: crash_on_boom,
    ) as tree:
        first, _, ctx = connect(tree, user)
        connect(tree, user, thread_id=ctx.thread_id)  # supersedes the first
        second, _, _ = connect(tree, user)
        assert not connect(tree, user)[0].admitted  # full: levels rise, a refusal
        handle_of(second).deliver("boom")  # a crash and a restart
        wait_until(lambda: any(name == "restart" for name, _ in observer.calls))
        handle_of(second).closed()
        handle_of(first).closed()
        tree.snapshot()
    assert {name for name, _ in observer.calls} >= {
        "admission",
        "cleanup",
        "release_latency",
        "usage",
        "level_changed",
        "restart",
    }
    for name, args in observer.calls:
        assert not any(user in repr(arg) for arg in args), (name, args)
        if name == "admission":
            assert args[0] in get_args(AdmissionResult)
        if name == "cleanup":
            assert args[0] in get_args(CleanupReason) and args[1] in {"ok", "abandoned"}
        if name == "level_changed":
            assert args[0] in {"user", "node"}
