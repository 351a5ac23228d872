"""Dispatcher-backed actors: pykka's semantics on a few shared worker threads."""

from __future__ import annotations

import gc
import threading
import time
import weakref
from collections.abc import Iterator
from types import TracebackType
from typing import Any

import pykka
import pytest

from actors._runtime.dispatch import DispatchedActor, Dispatcher, stop_soon
from actors.errors import DispatcherStopped
from actors.routing import RoutingActor
from tests.helpers import wait_until

pytestmark = pytest.mark.timeout(20)


class Recorder(DispatchedActor):
    """Records what it handles, on which thread, and every hook it runs."""

    def __init__(self, dispatcher: Dispatcher, name: str = "", delay: float = 0.0) -> None:
        super().__init__(dispatcher)
        self.name = name
        self.delay = delay
        self.seen: list[Any] = []
        self.hooks: list[tuple[str, str]] = [("__init__", threading.current_thread().name)]
        self.busy = 0
        self.most_at_once = 0
        self.log: list[str] | None = None  # shared between actors for fairness tests
        self.drained: list[Any] = []

    def on_start(self) -> None:
        self.hooks.append(("on_start", threading.current_thread().name))

    def on_receive(self, message: Any) -> Any:
        self.busy += 1
        self.most_at_once = max(self.most_at_once, self.busy)
        try:
            if self.delay:
                time.sleep(self.delay)
            if isinstance(message, threading.Event):
                message.wait(5)
                return None
            if message == "boom":
                raise RuntimeError("boom")
            if message == "state":
                return {"seen": list(self.seen), "most_at_once": self.most_at_once}
            self.seen.append(message)
            if self.log is not None:
                self.log.append(self.name)
            return ("ok", message)
        finally:
            self.busy -= 1

    def on_failure(
        self,
        exception_type: type[BaseException] | None,
        exception_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.hooks.append(("on_failure", threading.current_thread().name))
        while not self.actor_inbox.empty():
            self.drained.append(self.actor_inbox.get().message)

    def on_stop(self) -> None:
        self.hooks.append(("on_stop", threading.current_thread().name))

    def double(self, value: int) -> int:
        return value * 2


@pytest.fixture
def dispatcher() -> Iterator[Dispatcher]:
    running = Dispatcher(workers=2, batch=8).start()
    yield running
    running.stop(timeout=5)


def actor_of(ref: pykka.ActorRef[Any]) -> Recorder:
    actor = ref._actor_weakref()
    assert isinstance(actor, Recorder)
    return actor


def test_messages_to_one_actor_are_handled_in_the_order_they_were_sent(
    dispatcher: Dispatcher,
) -> None:
    ref = Recorder.start(dispatcher)
    for n in range(500):
        ref.tell(n)
    assert ref.ask("state", block=True, timeout=5)["seen"] == list(range(500))


def test_one_actor_never_runs_on_two_workers_at_once(dispatcher: Dispatcher) -> None:
    ref = Recorder.start(dispatcher, delay=0.001)

    def sender() -> None:
        for n in range(30):
            ref.tell(n)

    senders = [threading.Thread(target=sender) for _ in range(4)]
    for thread in senders:
        thread.start()
    for thread in senders:
        thread.join(5)
    state = ref.ask("state", block=True, timeout=5)
    assert len(state["seen"]) == 120
    assert state["most_at_once"] == 1


def test_an_ask_gets_the_reply_and_a_proxy_calls_a_method(dispatcher: Dispatcher) -> None:
    ref = Recorder.start(dispatcher)
    assert ref.ask("hello", block=True, timeout=5) == ("ok", "hello")
    assert ref.proxy().double(21).get(timeout=5) == 42
    assert ref.proxy().name.get(timeout=5) == ""


def test_an_exception_in_an_ask_goes_back_to_the_caller_and_the_actor_lives_on(
    dispatcher: Dispatcher,
) -> None:
    ref = Recorder.start(dispatcher)
    with pytest.raises(RuntimeError, match="boom"):
        ref.ask("boom", block=True, timeout=5)
    assert ref.is_alive()
    assert ref.ask("after", block=True, timeout=5) == ("ok", "after")
    assert "on_failure" not in [hook for hook, _ in actor_of(ref).hooks]


def test_an_exception_in_a_told_message_runs_on_failure_once_and_stops_the_actor(
    dispatcher: Dispatcher,
) -> None:
    ref = Recorder.start(dispatcher)
    actor = actor_of(ref)
    ref.tell("before")
    ref.tell("boom")
    wait_until(lambda: not ref.is_alive(), what="the actor stopped")
    wait_until(lambda: dispatcher.actors == 0, what="the actor left the dispatcher")
    hooks = [hook for hook, _ in actor.hooks]
    assert hooks == ["__init__", "on_start", "on_failure"]  # no on_stop after a failure
    assert actor.seen == ["before"]
    assert ref not in pykka.ActorRegistry.get_all()
    with pytest.raises(pykka.ActorDeadError):
        ref.tell("later")
    with pytest.raises(pykka.ActorDeadError):
        ref.ask("later", block=True, timeout=5)


def test_on_failure_can_drain_the_messages_left_in_the_inbox(dispatcher: Dispatcher) -> None:
    gate = threading.Event()
    ref = Recorder.start(dispatcher)
    ref.tell(gate)  # holds the actor's turn until everything below is queued
    ref.tell("boom")
    ref.tell("left 1")
    ref.tell("left 2")
    gate.set()
    wait_until(lambda: not ref.is_alive(), what="the actor stopped")
    assert actor_of(ref).drained == ["left 1", "left 2"]


def test_stop_handles_what_was_sent_before_it_then_runs_on_stop_and_refuses_the_rest(
    dispatcher: Dispatcher,
) -> None:
    ref = Recorder.start(dispatcher, delay=0.002)
    actor = actor_of(ref)
    for n in range(20):
        ref.tell(n)
    assert ref.stop(block=True, timeout=5) is True
    assert actor.seen == list(range(20))
    assert actor.hooks[-1][0] == "on_stop"
    assert not ref.is_alive()
    assert ref.stop(block=True, timeout=5) is False
    with pytest.raises(pykka.ActorDeadError):
        ref.ask("late", block=True, timeout=5)


def test_asks_queued_behind_a_stop_are_answered_with_actor_dead(dispatcher: Dispatcher) -> None:
    ref = Recorder.start(dispatcher, delay=0.05)
    ref.tell("slow")  # the stop and the ask queue up behind it
    stopped = ref.stop(block=False)
    late = ref.ask("late", block=False)
    assert stopped.get(timeout=5) is True
    with pytest.raises(pykka.ActorDeadError):
        late.get(timeout=5)


def test_hooks_run_on_a_worker_and_init_on_the_thread_that_starts_the_actor(
    dispatcher: Dispatcher,
) -> None:
    ref = Recorder.start(dispatcher)
    actor = actor_of(ref)
    ref.stop(block=True, timeout=5)
    threads = dict(actor.hooks)
    assert threads["__init__"] == threading.current_thread().name
    assert threads["on_start"].startswith(dispatcher.name)
    assert threads["on_stop"].startswith(dispatcher.name)


def test_a_busy_actor_does_not_starve_another_on_the_same_worker() -> None:
    single = Dispatcher(workers=1, batch=4).start()
    try:
        order: list[str] = []
        busy = Recorder.start(single, name="busy", delay=0.001)
        quiet = Recorder.start(single, name="quiet")
        actor_of(busy).log = order
        actor_of(quiet).log = order
        for n in range(200):
            busy.tell(n)
        quiet.tell("one")
        assert quiet.ask("state", block=True, timeout=5)["seen"] == ["one"]
        assert order.index("quiet") <= 2 * single.batch, order[:20]
        assert len(busy.ask("state", block=True, timeout=10)["seen"]) == 200
    finally:
        single.stop(timeout=5)


def test_a_thousand_actors_run_on_two_threads() -> None:
    before = threading.active_count()
    few = Dispatcher(workers=2).start()
    try:
        refs = [Recorder.start(few) for _ in range(1000)]
        assert threading.active_count() == before + 2
        futures = [ref.ask(n, block=False) for n, ref in enumerate(refs)]
        assert [f.get(timeout=10) for f in futures] == [("ok", n) for n in range(1000)]
        assert few.actors == 1000
        assert len(pykka.ActorRegistry.get_by_class(Recorder)) == 1000
    finally:
        few.stop(timeout=10)
    assert few.actors == 0
    assert pykka.ActorRegistry.get_by_class(Recorder) == []
    wait_until(lambda: threading.active_count() == before, what="the workers gone")


def test_stopping_the_dispatcher_stops_its_actors_and_ends_its_workers() -> None:
    own = Dispatcher(workers=3).start()
    refs = [Recorder.start(own) for _ in range(10)]
    actors = [actor_of(ref) for ref in refs]
    assert own.stop(timeout=5) == 0
    assert not own.running
    assert all(not ref.is_alive() for ref in refs)
    assert all(actor.hooks[-1][0] == "on_stop" for actor in actors)
    assert not [t for t in threading.enumerate() if t.name.startswith(own.name)]


def test_an_actor_stuck_past_the_stop_timeout_is_ended_and_its_asks_fail() -> None:
    own = Dispatcher(workers=2).start()
    release = threading.Event()

    class Stuck(DispatchedActor):
        def on_receive(self, message: Any) -> Any:
            release.wait(10)
            return message

    ref = Stuck.start(own)
    ref.tell("hang")
    waiting = ref.ask("never", block=False)
    try:
        assert own.stop(timeout=0.3) == 1
        assert not ref.is_alive()
        assert ref not in pykka.ActorRegistry.get_all()
        with pytest.raises(pykka.ActorDeadError):
            waiting.get(timeout=5)
    finally:
        release.set()
    wait_until(
        lambda: not [t for t in threading.enumerate() if t.name.startswith(own.name)],
        what="the stuck worker gone once released",
    )


def test_stopping_the_dispatcher_while_an_actor_is_ending_waits_for_that_end(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    own = Dispatcher(workers=1).start()
    ref = Recorder.start(own)
    actor = actor_of(ref)
    ending, release = threading.Event(), threading.Event()
    forget = own.forget

    def slow_forget(mailbox: Any) -> None:  # the actor has let go of its mailbox, not yet gone
        ending.set()
        release.wait(5)
        forget(mailbox)

    monkeypatch.setattr(own, "forget", slow_forget)
    stopped: list[int] = []
    stopper = threading.Thread(target=lambda: stopped.append(own.stop(timeout=5)))
    try:
        stop_soon(ref)
        assert ending.wait(5)
        stopper.start()
        condition = own._lock
        wait_until(lambda: bool(getattr(condition, "_waiters", ())), what="stop() to wait")
    finally:
        release.set()
        if stopper.is_alive():
            stopper.join(5)
        own.stop(timeout=5)  # a no-op once stopped
    assert stopped == [0]  # nothing killed, nothing raised
    assert [hook for hook, _ in actor.hooks] == ["__init__", "on_start", "on_stop"]


def test_an_actor_cannot_start_on_a_dispatcher_that_is_not_running() -> None:
    idle = Dispatcher()
    with pytest.raises(DispatcherStopped):
        Recorder.start(idle)
    assert pykka.ActorRegistry.get_by_class(Recorder) == []


def test_a_stopped_dispatcher_can_be_started_again() -> None:
    again = Dispatcher(workers=1)
    for _ in range(2):
        again.start()
        ref = Recorder.start(again)
        assert ref.ask("x", block=True, timeout=5) == ("ok", "x")
        again.stop(timeout=5)
        assert not ref.is_alive()


def test_the_registry_stops_a_dispatched_actor_like_any_other(dispatcher: Dispatcher) -> None:
    ref = Recorder.start(dispatcher)
    actor = actor_of(ref)
    pykka.ActorRegistry.stop_all(block=True, timeout=5)
    assert not ref.is_alive()
    assert actor.hooks[-1][0] == "on_stop"


def test_a_dispatcher_needs_at_least_one_worker_and_a_batch_of_one() -> None:
    with pytest.raises(ValueError, match="must be >= 1"):
        Dispatcher(workers=0)
    with pytest.raises(ValueError, match="must be >= 1"):
        Dispatcher(batch=0)


def test_the_registry_keeps_actors_in_start_order_and_forgets_a_stopped_one(
    dispatcher: Dispatcher,
) -> None:
    refs = [Recorder.start(dispatcher, name=str(n)) for n in range(5)]
    assert [ref for ref in pykka.ActorRegistry.get_all() if ref in refs] == refs
    assert refs[2] in pykka.ActorRegistry.get_all()
    refs[2].stop(block=True, timeout=5)
    assert refs[2] not in pykka.ActorRegistry.get_all()
    assert pykka.ActorRegistry.get_by_class(Recorder) == [refs[0], refs[1], refs[3], refs[4]]
    assert pykka.ActorRegistry.get_by_urn(refs[3].actor_urn) is refs[3]
    assert pykka.ActorRegistry.get_by_urn(refs[2].actor_urn) is None
    pykka.ActorRegistry.unregister(refs[2])  # not there any more: nothing happens


def test_stop_soon_stops_an_actor_after_what_it_was_sent_and_ignores_a_dead_one(
    dispatcher: Dispatcher,
) -> None:
    ref = Recorder.start(dispatcher)
    actor = actor_of(ref)
    ref.tell("last")
    stop_soon(ref)
    wait_until(lambda: not ref.is_alive(), what="the actor stopped")
    assert actor.seen == ["last"]
    assert actor.hooks[-1][0] == "on_stop"
    stop_soon(ref)  # dead: no error


class TurnCounter(DispatchedActor):
    """Counts its messages and its turns; fails at the end of a turn on request."""

    def __init__(self, dispatcher: Dispatcher) -> None:
        super().__init__(dispatcher)
        self.messages = 0
        self.turn_ends: list[int] = []
        self.fail_at_turn_end = False
        self.failed = False

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, threading.Event):
            message.wait(5)
        self.messages += 1
        return self.messages

    def on_turn_end(self) -> None:
        self.turn_ends.append(self.messages)
        if self.fail_at_turn_end:
            raise RuntimeError("turn end")

    def on_failure(
        self,
        exception_type: type[BaseException] | None,
        exception_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.failed = True


def test_on_turn_end_runs_once_after_each_batch_of_messages() -> None:
    single = Dispatcher(workers=1, batch=4).start()
    try:
        gate = threading.Event()
        ref = TurnCounter.start(single)
        actor = ref._actor_weakref()
        assert isinstance(actor, TurnCounter)
        ref.tell(gate)  # the first turn waits here while nine more messages queue up
        for _ in range(9):
            ref.tell("x")
        gate.set()
        wait_until(lambda: actor.turn_ends[-1:] == [10], what="every message handled")
        # batches of 4: one turn end each (after a first, empty turn if on_start ran alone)
        assert [n for n in actor.turn_ends if n] == [4, 8, 10]
    finally:
        single.stop(timeout=5)


def test_an_exception_in_on_turn_end_runs_on_failure_and_stops_the_actor(
    dispatcher: Dispatcher,
) -> None:
    ref = TurnCounter.start(dispatcher)
    actor = ref._actor_weakref()
    assert isinstance(actor, TurnCounter)
    actor.fail_at_turn_end = True
    ref.tell("x")
    wait_until(lambda: not ref.is_alive(), what="the actor stopped")
    assert actor.failed


def test_only_an_actor_class_with_its_own_on_turn_end_is_called_after_its_turns() -> None:
    class Plain(DispatchedActor):
        def on_receive(self, message: Any) -> Any:
            return message

    class Counted(Plain):
        def on_turn_end(self) -> None:
            pass

    class Inherited(Counted):
        pass

    assert not Plain.has_turn_end
    assert Counted.has_turn_end
    assert Inherited.has_turn_end
    assert TurnCounter.has_turn_end


class Table(RoutingActor):
    """An actor with a dispatch table of its own bound methods."""

    def __init__(self, dispatcher: Dispatcher) -> None:
        super().__init__(dispatcher)
        self._dispatch = {int: self.double}

    def double(self, value: int) -> int:
        return value * 2


@pytest.mark.parametrize("kind", [Recorder, Table])
def test_an_ended_actor_is_freed_by_reference_counting_alone(
    dispatcher: Dispatcher, kind: type[DispatchedActor]
) -> None:
    gc.collect()
    gc.disable()  # the cyclic collector must not be needed
    try:
        ref = kind.start(dispatcher)
        ref.ask(21, timeout=5)
        actor = ref._actor_weakref()
        assert actor is not None
        gone = weakref.ref(actor)
        del actor
        ref.stop(timeout=5)
        wait_until(lambda: gone() is None, timeout=5, what="the ended actor freed")
        with pytest.raises(pykka.ActorDeadError):
            ref.ask(1, timeout=5)
    finally:
        gc.enable()
