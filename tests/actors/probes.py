"""Test doubles for the actors' unit tests: a recording actor, a held ledger, a runtime.

Not a test module: the tests of :mod:`actors` import from here.
"""

from __future__ import annotations

import itertools
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import attrs
import pykka

from actors._runtime.dispatch import DispatchedActor, Dispatcher
from actors._runtime.mailbox import Mailbox
from actors.clock import Clock
from actors.context import UserExecutionContext
from actors.messages import Admit, GetSnapshot, UsageReport
from actors.observer import Observer
from actors.policies.ledger import AcquireResult, InMemoryLedger, Ledger, PendingAcquire
from actors.ports import Admission, AdmissionTicket, Handle, Handler, QueuePort
from actors.runtime import Runtime
from actors.settings import Settings
from actors.tree import echo_handler
from actors.user.actor import UserSupervisorActor
from tests.helpers import wait_until

__all__ = [
    "Blocker",
    "HeldLedger",
    "Inbox",
    "Recorder",
    "SupervisorRig",
    "admit_message",
    "asleep",
    "ended",
    "mailbox_state",
    "make_runtime",
    "ticket_answer",
]

T = TypeVar("T")

_markers = itertools.count()


@attrs.frozen
class _Marker:
    number: int


class Recorder(DispatchedActor):
    """Puts every message it is told into ``seen``, with the name of the thread that ran it."""

    def __init__(self, dispatcher: Dispatcher, seen: queue.SimpleQueue[tuple[Any, str]]) -> None:
        super().__init__(dispatcher)
        self._seen = seen

    def on_receive(self, message: Any) -> Any:
        self._seen.put((message, threading.current_thread().name))
        return None


class Blocker(DispatchedActor):
    """Holds a worker of its dispatcher until released: see :meth:`hold`."""

    def on_receive(self, message: Any) -> Any:
        entered, release = message
        entered.set()
        release.wait(10)
        return None

    @classmethod
    def hold(cls, dispatcher: Dispatcher) -> threading.Event:
        """Once this returns, one worker of ``dispatcher`` waits for the event returned."""
        entered, release = threading.Event(), threading.Event()
        cls.start(dispatcher).tell((entered, release))
        assert entered.wait(5), "the blocker never ran"
        return release


class Inbox:
    """A :class:`Recorder` started on ``dispatcher``, and what it has been told."""

    def __init__(self, dispatcher: Dispatcher) -> None:
        self.seen: queue.SimpleQueue[tuple[Any, str]] = queue.SimpleQueue()
        self.ref: pykka.ActorRef[Any] = Recorder.start(dispatcher, self.seen)

    def next_with_thread(self, timeout: float = 2.0) -> tuple[Any, str]:
        """The next message told, and the thread that handled it."""
        return self.seen.get(timeout=timeout)

    def next(self, kind: type[T], timeout: float = 2.0) -> T:
        """The next message told, which must be a ``kind``."""
        message, _ = self.next_with_thread(timeout)
        assert isinstance(message, kind), f"expected a {kind.__name__}, got {message!r}"
        return message

    def take(self, kind: type[T], timeout: float = 2.0) -> T:
        """The next ``kind`` told, skipping any other message."""
        while True:
            message, _ = self.next_with_thread(timeout)
            if isinstance(message, kind):
                return message

    def settle(self, timeout: float = 2.0) -> list[Any]:
        """Everything told from this thread so far (a marker sent now comes after it)."""
        marker = _Marker(next(_markers))
        self.ref.tell(marker)
        found: list[Any] = []
        while True:
            message, _ = self.next_with_thread(timeout)
            if message == marker:
                return found
            found.append(message)


def mailbox_state(ref: pykka.ActorRef[Any]) -> str:
    """``new``, ``idle``, ``scheduled`` or ``dead``: where a dispatched actor is."""
    inbox = ref.actor_inbox
    assert isinstance(inbox, Mailbox)
    return inbox._state


def asleep(ref: pykka.ActorRef[Any]) -> None:
    """Wait until a dispatched actor has had its turns and sleeps."""
    wait_until(lambda: mailbox_state(ref) == "idle", what=f"{ref} asleep")


def ended(ref: pykka.ActorRef[Any]) -> None:
    """Wait until a dispatched actor has ended (``on_failure`` or ``on_stop`` done)."""
    wait_until(lambda: mailbox_state(ref) == "dead", what=f"{ref} ended")


def make_runtime(
    clock: Clock,
    observer: Observer,
    dispatcher: Dispatcher,
    system_dispatcher: Dispatcher,
    *,
    settings: Settings | None = None,
    ledger: Ledger | None = None,
    handler_factory: Callable[[], Handler] = lambda: echo_handler,
) -> Runtime:
    """A tree's runtime on the given (started) dispatchers; production settings by default."""
    settings = settings or Settings()
    return Runtime(
        settings,
        clock,
        ledger or InMemoryLedger(settings.quota.node_max_managers),
        observer,
        handler_factory,
        dispatcher=dispatcher,
        system_dispatcher=system_dispatcher,
    )


def ticket_answer(ticket: AdmissionTicket, timeout: float = 2.0) -> Admission:
    """The answer a ticket was given; fails if none came in time."""
    answer = ticket.wait(timeout)
    assert answer is not None, "no answer to the admission"
    return answer


def admit_message(
    user_id: str, thread_id: str | None = None, *, confirm_close: bool = True
) -> tuple[UserExecutionContext, QueuePort, AdmissionTicket]:
    """A new connection's context, port and ticket, for an :class:`~actors.messages.Admit`."""
    context = UserExecutionContext.from_websocket_request(user_id, thread_id)
    return context, QueuePort(confirm_close=confirm_close), AdmissionTicket()


class HeldLedger:
    """A shared ledger whose every acquisition waits until the test answers it.

    Slots are kept in an :class:`InMemoryLedger`; :meth:`answer` takes the
    slot (or forces ``result``) and notifies the supervisor, as the
    Redis ledger's I/O thread would.
    """

    shared = True

    def __init__(self, node_limit: int = 100) -> None:
        self.book = InMemoryLedger(node_limit)
        self.pending: queue.SimpleQueue[PendingAcquire] = queue.SimpleQueue()
        self.cancelled: list[PendingAcquire] = []

    def answer(self, result: AcquireResult | None = None, timeout: float = 2.0) -> PendingAcquire:
        """Answer the oldest acquisition asked for: ``result``, or the book's own answer."""
        pending = self.pending.get(timeout=timeout)
        if result is None:
            result = self.book.acquire(pending.user_id, pending.key, pending.holder, pending.limit)
        pending.reply, pending.answered = result, True
        pending.notify(pending)
        return pending

    def acquire(
        self, user_id: str, key: str, holder: str, limit: int, evict: bool = False
    ) -> AcquireResult:
        return self.book.acquire(user_id, key, holder, limit, evict)

    def begin_acquire(
        self,
        user_id: str,
        key: str,
        holder: str,
        limit: int,
        *,
        evict: bool,
        notify: Callable[[PendingAcquire], None],
    ) -> AcquireResult | PendingAcquire:
        pending = PendingAcquire(user_id, key, holder, limit, evict=evict, notify=notify)
        self.pending.put(pending)
        return pending

    def end_acquire(self, pending: PendingAcquire) -> AcquireResult | PendingAcquire:
        assert pending.answered
        result: AcquireResult = pending.reply
        return result

    def cancel_acquire(self, pending: PendingAcquire) -> None:
        self.cancelled.append(pending)

    def transfer(self, user_id: str, key: str, old_holder: str, new_holder: str) -> bool:
        return self.book.transfer(user_id, key, old_holder, new_holder)

    def release(self, user_id: str, key: str, holder: str) -> bool:
        return self.book.release(user_id, key, holder)

    def renew(self, user_id: str, key: str, holder: str) -> bool:
        return self.book.renew(user_id, key, holder)

    def release_user(self, user_id: str) -> int:
        return self.book.release_user(user_id)

    def usage(self, user_id: str) -> int:
        return self.book.usage(user_id)

    def total(self) -> int:
        return self.book.total()

    def holders(self, user_id: str) -> dict[str, str]:
        return self.book.holders(user_id)


class SupervisorRig:
    """One :class:`UserSupervisorActor` for ``alice``, with a recorder as its root."""

    def __init__(self, runtime: Runtime, user_id: str = "alice") -> None:
        self.runtime = runtime
        self.user_id = user_id
        self.root = Inbox(runtime.system_dispatcher)
        self.ref: pykka.ActorRef[Any] = UserSupervisorActor.start(user_id, self.root.ref, runtime)

    def admit(
        self, thread_id: str | None = None, *, confirm_close: bool = True
    ) -> tuple[UserExecutionContext, QueuePort, AdmissionTicket]:
        """Send an admission; its context, port and ticket."""
        context, port, ticket = admit_message(self.user_id, thread_id, confirm_close=confirm_close)
        self.ref.tell(Admit(context, port, ticket))
        return context, port, ticket

    def connect(
        self, thread_id: str | None = None, *, confirm_close: bool = True
    ) -> tuple[UserExecutionContext, QueuePort, Handle]:
        """Admit a connection that must be admitted; its port is bound to its handle."""
        context, port, ticket = self.admit(thread_id, confirm_close=confirm_close)
        answer = ticket_answer(ticket)
        assert answer.handle is not None, f"not admitted: {answer}"
        port.bind(answer.handle)
        return context, port, answer.handle

    def snapshot(self) -> dict[str, Any]:
        """The supervisor's state (an ask: every message sent before it has been handled)."""
        state: dict[str, Any] = self.ref.ask(GetSnapshot(), block=True, timeout=2)
        return state

    def report_where(
        self, predicate: Callable[[UsageReport], bool], timeout: float = 2.0
    ) -> UsageReport:
        """The first usage report to the root that satisfies ``predicate``."""
        while True:
            report = self.root.take(UsageReport, timeout)
            if predicate(report):
                return report
