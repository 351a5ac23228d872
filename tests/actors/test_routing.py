"""RoutingActor: a message goes to the handler registered for its type; Crash fails on purpose."""

from __future__ import annotations

import logging
import queue
from types import TracebackType
from typing import Any

import attrs
import pytest

from actors._runtime.dispatch import Dispatcher
from actors.errors import InjectedFault
from actors.messages import Crash
from actors.routing import RoutingActor
from tests.actors.probes import ended

pytestmark = pytest.mark.timeout(20)


@attrs.frozen
class Double:
    value: int


@attrs.frozen
class Note:
    text: str


@attrs.frozen
class LoudNote(Note):
    """A subclass of a registered type: not registered itself."""


class Router(RoutingActor):
    """Doubles numbers, notes texts, and reports its failure."""

    def __init__(self, dispatcher: Dispatcher, failures: queue.SimpleQueue[Any]) -> None:
        super().__init__(dispatcher)
        self.notes: list[str] = []
        self._failures = failures
        self._dispatch = {Double: self._double, Note: self._note}

    def _double(self, message: Double) -> int:
        return message.value * 2

    def triple(self, value: int) -> int:
        """Not a message handler: reached through a proxy only."""
        return value * 3

    def _note(self, message: Note) -> list[str]:
        self.notes.append(message.text)
        return list(self.notes)

    def on_failure(
        self,
        exception_type: type[BaseException] | None,
        exception_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._failures.put(exception_value)


@pytest.fixture
def failures() -> queue.SimpleQueue[Any]:
    return queue.SimpleQueue()


def test_a_message_goes_to_the_handler_of_its_type_and_its_answer_comes_back(
    system: Dispatcher, failures: queue.SimpleQueue[Any]
) -> None:
    ref = Router.start(system, failures)
    assert ref.ask(Double(21), timeout=5) == 42
    assert ref.ask(Note("a"), timeout=5) == ["a"]
    ref.tell(Note("b"))
    assert ref.ask(Note("c"), timeout=5) == ["a", "b", "c"]


def test_a_crash_raises_injected_fault_with_its_reason_and_stops_the_actor(
    system: Dispatcher, failures: queue.SimpleQueue[Any]
) -> None:
    ref = Router.start(system, failures)
    ref.tell(Crash("on purpose"))
    failure = failures.get(timeout=5)
    assert isinstance(failure, InjectedFault) and str(failure) == "on purpose"
    ended(ref)
    assert not ref.is_alive()


def test_an_asked_crash_raises_in_the_caller_and_the_actor_lives_on(
    system: Dispatcher, failures: queue.SimpleQueue[Any]
) -> None:
    ref = Router.start(system, failures)
    with pytest.raises(InjectedFault, match="asked"):
        ref.ask(Crash("asked"), timeout=5)
    assert ref.ask(Double(2), timeout=5) == 4


def test_a_message_of_no_registered_type_is_logged_and_ignored(
    system: Dispatcher, failures: queue.SimpleQueue[Any], caplog: pytest.LogCaptureFixture
) -> None:
    ref = Router.start(system, failures)
    with caplog.at_level(logging.WARNING, logger="actors.routing"):
        assert ref.ask("what is this", timeout=5) is None
        assert ref.ask(LoudNote("subclass"), timeout=5) is None  # the type itself is looked up
    assert ref.ask(Note("still here"), timeout=5) == ["still here"]
    warnings = [r.getMessage() for r in caplog.records if r.name == "actors.routing"]
    assert len(warnings) == 2 and all("Router: unknown message" in w for w in warnings)
    assert failures.empty()


def test_pykkas_own_messages_still_work_on_a_routing_actor(
    system: Dispatcher, failures: queue.SimpleQueue[Any]
) -> None:
    ref = Router.start(system, failures)
    assert ref.proxy().triple(5).get(timeout=5) == 15
    ref.stop(timeout=5)
    assert not ref.is_alive()
