"""``tell_here`` and ``call_here``: a sleeping dispatched actor's turn on the sender's thread."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pykka
import pytest

from actors._runtime.dispatch import DispatchedActor, Dispatcher
from actors._runtime.mailbox import Mailbox, stop_here, tell_here
from actors.context import UserExecutionContext
from actors.manager import ManagerActor
from actors.observer import NullObserver
from actors.ports import QueuePort
from actors.tree import SupervisionTree
from tests.helpers import connect, handle_of, make_config, wait_until

pytestmark = pytest.mark.timeout(20)


class Echo(DispatchedActor):
    """Records each message with its thread; answers ``("ping", ref)`` with ``"pong"`` to ref."""

    def __init__(self, dispatcher: Dispatcher) -> None:
        super().__init__(dispatcher)
        self.seen: list[tuple[Any, str]] = []
        self.turns = 0
        self.stopped_on = ""
        self.failed_with = ""

    def on_receive(self, message: Any) -> Any:
        self.seen.append((message, threading.current_thread().name))
        if isinstance(message, threading.Event):
            message.wait(5)
        elif isinstance(message, tuple) and message[0] == "ping":
            message[1].tell("pong")
        elif isinstance(message, tuple) and message[0] == "call":
            tell_here(message[1], ("ping", self.actor_ref))
        return None

    def on_turn_end(self) -> None:
        self.turns += 1

    def on_stop(self) -> None:
        self.stopped_on = threading.current_thread().name

    def on_failure(self, *exc_info: object) -> None:
        self.failed_with = repr(exc_info[1])

    def note(self, first: str, second: str) -> None:
        """A call to run as a turn of its own (:meth:`Mailbox.call_here`)."""
        self.seen.append(((first, second), threading.current_thread().name))
        if first == "raise":
            raise ValueError(second)


class Threaded(pykka.ThreadingActor):
    def __init__(self) -> None:
        super().__init__()
        self.seen: list[Any] = []

    def on_receive(self, message: Any) -> Any:
        self.seen.append(message)
        return list(self.seen)


@pytest.fixture
def dispatchers() -> Iterator[tuple[Dispatcher, Dispatcher]]:
    first = Dispatcher(workers=1, name="first").start()
    second = Dispatcher(workers=1, name="second").start()
    yield first, second
    first.stop(timeout=5)
    second.stop(timeout=5)


def actor_of(ref: pykka.ActorRef[Any]) -> Echo:
    actor = ref._actor_weakref()
    assert isinstance(actor, Echo)
    return actor


def state_of(ref: pykka.ActorRef[Any]) -> str:
    inbox = ref.actor_inbox
    assert isinstance(inbox, Mailbox)
    return inbox._state


def asleep(ref: pykka.ActorRef[Any]) -> None:
    """Wait until the actor has had its first turn and sleeps."""
    wait_until(lambda: state_of(ref) == "idle", what="the actor asleep")


def busy_echo(dispatcher: Dispatcher) -> tuple[pykka.ActorRef[Any], threading.Event]:
    """An :class:`Echo` whose worker's turn holds it until the event returned is set."""
    ref = Echo.start(dispatcher)
    asleep(ref)
    gate = threading.Event()
    ref.tell(gate)
    wait_until(lambda: len(actor_of(ref).seen) == 1, what="the gate reached")
    return ref, gate


def test_a_message_to_a_sleeping_actor_is_handled_on_the_senders_thread_before_tell_returns(
    dispatchers: tuple[Dispatcher, Dispatcher],
) -> None:
    ref = Echo.start(dispatchers[0])
    asleep(ref)
    assert tell_here(ref, "hello") is True
    assert actor_of(ref).seen == [("hello", threading.current_thread().name)]
    assert state_of(ref) == "idle"


def test_a_message_to_a_busy_actor_waits_for_a_worker_behind_what_is_queued(
    dispatchers: tuple[Dispatcher, Dispatcher],
) -> None:
    ref, gate = busy_echo(dispatchers[0])
    assert tell_here(ref, "second") is True
    assert [message for message, _ in actor_of(ref).seen] == [gate]  # not handled here
    gate.set()
    wait_until(lambda: len(actor_of(ref).seen) == 2, what="the second message handled")
    message, thread = actor_of(ref).seen[1]
    assert message == "second"
    assert thread.startswith("first")


def test_an_answer_sent_during_the_inline_turn_is_handled_in_the_callers_same_turn(
    dispatchers: tuple[Dispatcher, Dispatcher],
) -> None:
    caller = Echo.start(dispatchers[0])
    callee = Echo.start(dispatchers[1])
    asleep(caller)
    asleep(callee)
    turns_before = actor_of(caller).turns
    caller.tell(("call", callee))
    wait_until(lambda: len(actor_of(caller).seen) == 2, what="the answer handled")
    seen = actor_of(caller).seen
    assert [message for message, _ in seen] == [("call", callee), "pong"]
    assert seen[0][1] == seen[1][1]  # one worker
    callee_message, callee_thread = actor_of(callee).seen[0]
    assert callee_message == ("ping", caller)
    assert callee_thread == seen[0][1]  # the callee ran on the caller's worker
    assert actor_of(caller).turns == turns_before + 1


def test_messages_that_arrive_during_the_inline_turn_go_to_a_worker_after_it(
    dispatchers: tuple[Dispatcher, Dispatcher],
) -> None:
    ref = Echo.start(dispatchers[0])
    asleep(ref)
    gate = threading.Event()
    sender = threading.Thread(target=lambda: tell_here(ref, gate))
    sender.start()
    wait_until(lambda: len(actor_of(ref).seen) == 1, what="the inline turn under way")
    ref.tell("later")  # queued behind the turn: it must wake a worker
    gate.set()
    sender.join(5)
    wait_until(lambda: len(actor_of(ref).seen) == 2, what="the later message handled")
    assert actor_of(ref).seen[0] == (gate, sender.name)
    assert actor_of(ref).seen[1][0] == "later"
    assert actor_of(ref).seen[1][1].startswith("first")


def call_here(ref: pykka.ActorRef[Any], first: str, second: str) -> bool:
    inbox = ref.actor_inbox
    assert isinstance(inbox, Mailbox)
    return inbox.call_here(Echo.note, first, second)


def test_a_call_to_a_sleeping_actor_is_a_turn_of_its_own_on_the_callers_thread(
    dispatchers: tuple[Dispatcher, Dispatcher],
) -> None:
    ref = Echo.start(dispatchers[0])
    asleep(ref)
    turns_before = actor_of(ref).turns
    assert call_here(ref, "a", "b") is True
    assert actor_of(ref).seen == [(("a", "b"), threading.current_thread().name)]
    assert actor_of(ref).turns == turns_before + 1  # on_turn_end ran, as after any turn
    assert state_of(ref) == "idle"


def test_a_call_to_a_busy_actor_is_refused_and_nothing_runs(
    dispatchers: tuple[Dispatcher, Dispatcher],
) -> None:
    ref, gate = busy_echo(dispatchers[0])
    assert call_here(ref, "a", "b") is False
    gate.set()
    wait_until(lambda: state_of(ref) == "idle", what="the actor asleep again")
    assert [message for message, _ in actor_of(ref).seen] == [gate]


def test_a_call_that_raises_fails_the_actor_as_a_told_message_that_raises(
    dispatchers: tuple[Dispatcher, Dispatcher],
) -> None:
    ref = Echo.start(dispatchers[0])
    asleep(ref)
    actor = actor_of(ref)
    assert call_here(ref, "raise", "boom") is True
    assert actor.failed_with == "ValueError('boom')"  # on_failure ran, here
    assert not ref.is_alive()
    assert state_of(ref) == "dead"
    assert call_here(ref, "a", "b") is False  # a dead actor takes no call


def test_messages_that_arrive_during_a_call_go_to_a_worker_after_it(
    dispatchers: tuple[Dispatcher, Dispatcher],
) -> None:
    ref = Echo.start(dispatchers[0])
    asleep(ref)
    inbox = ref.actor_inbox
    assert isinstance(inbox, Mailbox)

    def tell_during(actor: Any, first: str, second: str) -> None:
        Echo.note(actor, first, second)
        ref.tell("later")  # queued behind the call's turn: it must wake a worker

    assert inbox.call_here(tell_during, "a", "b") is True
    wait_until(lambda: len(actor_of(ref).seen) == 2, what="the later message handled")
    assert actor_of(ref).seen[1][0] == "later"
    assert actor_of(ref).seen[1][1].startswith("first")


def test_stop_here_ends_a_sleeping_actor_before_it_returns(
    dispatchers: tuple[Dispatcher, Dispatcher],
) -> None:
    ref = Echo.start(dispatchers[0])
    asleep(ref)
    actor = actor_of(ref)
    stop_here(ref)
    assert not ref.is_alive()
    assert actor.stopped_on == threading.current_thread().name
    assert ref not in pykka.ActorRegistry.get_all()
    assert dispatchers[0].actors == 0


def test_tell_here_to_a_dead_actor_returns_false(
    dispatchers: tuple[Dispatcher, Dispatcher],
) -> None:
    ref = Echo.start(dispatchers[0])
    ref.stop(block=True, timeout=5)
    assert tell_here(ref, "late") is False


def test_tell_here_to_an_actor_with_its_own_thread_is_a_plain_tell() -> None:
    ref = Threaded.start()
    try:
        assert tell_here(ref, "one") is True
        assert ref.ask("two", block=True, timeout=5) == ["one", "two"]
    finally:
        ref.stop(block=True, timeout=5)


class WhereHandler:
    """A handler that answers every frame with the name of the thread that ran it."""

    def __init__(self, inline: bool) -> None:
        self.runs_inline = inline

    def __call__(
        self, context: UserExecutionContext, text: str, send: Callable[[str], None]
    ) -> None:
        send(threading.current_thread().name)


@pytest.mark.parametrize("inline", [True, False])
def test_a_frame_for_an_idle_manager_runs_on_the_delivering_thread_only_if_the_handler_is_inline(
    inline: bool,
) -> None:
    with SupervisionTree(make_config(), handler_factory=lambda: WhereHandler(inline)) as tree:
        admission, port, _ = connect(tree, "alice")
        handle = handle_of(admission)
        (ref,) = pykka.ActorRegistry.get_by_class(ManagerActor)  # alice's only manager
        asleep(ref)
        handle.deliver("where")
        if inline:  # handled before deliver returned, here
            assert port.frames.get_nowait() == threading.current_thread().name
        else:
            assert port.frames.get(timeout=5).startswith("ws-supervisor-managers")
        handle.closed(1000)


class ReleaseThreads(NullObserver):
    """An observer that notes the thread each slot release runs on."""

    def __init__(self) -> None:
        self.threads: list[str] = []

    def release_latency(self, seconds: float) -> None:
        self.threads.append(threading.current_thread().name)


def test_with_the_memory_ledger_an_idle_tree_admits_and_frees_on_the_calling_thread() -> None:
    releases = ReleaseThreads()
    with SupervisionTree(make_config(), observer=releases) as tree:
        first, _, _ = connect(tree, "alice")  # alice's supervisor starts on a worker
        supervisor = tree.supervisors()["alice"]  # an ask: the root wakes
        asleep(tree._root_ref())
        asleep(supervisor)
        context = UserExecutionContext.from_websocket_request("alice")
        admission = tree.admit_nowait(context, QueuePort()).wait(0)
        assert admission is not None and admission.admitted  # before admit_nowait returned
        asleep(supervisor)
        handle_of(admission).closed(1000)
        assert tree.ledger.usage("alice") == 1  # freed before closed() returned
        assert releases.threads == [threading.current_thread().name]
        handle_of(first).closed(1000)


class UsageThreads(NullObserver):
    """An observer that notes the thread and the node's slot count of each usage report."""

    def __init__(self) -> None:
        self.reports: list[tuple[str, int]] = []

    def usage(self, managers: int, users: int, levels: Any) -> None:
        self.reports.append((threading.current_thread().name, managers))


def test_an_inline_admissions_usage_report_reaches_the_root_in_the_same_turn() -> None:
    usage = UsageThreads()
    with SupervisionTree(make_config(), observer=usage) as tree:
        first, _, _ = connect(tree, "alice")  # alice's supervisor starts on a worker
        supervisor, root = tree.supervisors()["alice"], tree._root_ref()
        asleep(root)
        asleep(supervisor)
        usage.reports.clear()
        context = UserExecutionContext.from_websocket_request("alice")
        admission = tree.admit_nowait(context, QueuePort()).wait(0)
        assert admission is not None and admission.admitted
        # the root counted the new slot before admit_nowait returned, and no worker woke
        assert usage.reports == [(threading.current_thread().name, 2)]
        assert state_of(root) == "idle" and state_of(supervisor) == "idle"
        handle_of(admission).closed(1000)
        handle_of(first).closed(1000)
