"""The edges of the actor world: ports, handlers, stats, handles and tickets.

A :class:`Port` is how a manager reaches its connection; the shell implements
it (sending across to the event loop), so actors never touch the loop. A
:class:`ConnectionHandle` is what the shell holds for an admitted connection:
it carries frames in and the close out. An :class:`AdmissionTicket` carries
the one answer to an admission back to whoever asked, exactly once.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any, Protocol

import attrs
import pykka

from actors.mailbox import tell_here
from actors.messages import ConnectionClosed, Inbound, PeerGone, ReapConnection
from supervisor.clock import Clock
from supervisor.context import UserExecutionContext
from supervisor.observer import AdmissionResult

__all__ = [
    "Admission",
    "AdmissionTicket",
    "ConnectionHandle",
    "Handler",
    "ManagerStats",
    "Port",
    "QueuePort",
]


class Port(Protocol):
    """A connection as a manager sees it; both methods are called on actor threads."""

    def send_text(self, text: str) -> None:
        """Queue one text frame for the client; must not block."""
        ...

    def close(self, code: int, reason: str) -> None:
        """Start closing the connection with ``code``; must not block."""
        ...


class Handler(Protocol):
    """The application: called on the manager's dispatcher worker for every inbound text frame.

    ``send`` queues a text frame back to the same connection. An exception
    raised here is a crash of the manager and follows the restart rules.
    A handler with a true ``runs_inline`` attribute never blocks: its frames
    may be handled on the delivering thread (:class:`ConnectionHandle`).
    """

    def __call__(
        self, context: UserExecutionContext, text: str, send: Callable[[str], None]
    ) -> None: ...


@attrs.define
class ManagerStats:
    """Live counters of one connection.

    Written by the manager (``last_seen`` also by the shell's
    heartbeat), read by the supervisor and the state dump. Plain attribute
    writes are atomic in CPython; readers may see a value one event old.
    """

    connected_at: float
    last_activity: float
    last_seen: float | None = None
    messages_in: int = 0
    messages_out: int = 0
    outbound_queued: int = 0
    restarts: int = 0


@attrs.frozen
class Admission:
    """The answer to an admission request."""

    result: AdmissionResult
    handle: ConnectionHandle | None = None
    reason: str = ""
    retry_after: float | None = None

    @property
    def admitted(self) -> bool:
        """True if the connection holds a slot and has a handle."""
        return self.handle is not None


class AdmissionTicket:
    """Carries one :class:`Admission` from the supervisor to the caller, once.

    The supervisor calls :meth:`offer` on its thread; the caller may give up
    with :meth:`withdraw`. Whichever comes first wins: an offer after a
    withdrawal returns False and the supervisor undoes the admission, so a
    caller that timed out never leaves a slot behind.
    """

    def __init__(self, on_answer: Callable[[Admission], None] | None = None) -> None:
        self._lock = threading.Lock()
        self._done: threading.Event | None = None  # made by wait() only: the loop never waits
        self._answer: Admission | None = None
        self._withdrawn = False
        self._on_answer = on_answer

    def offer(self, admission: Admission) -> bool:
        """Deliver the answer; False if the caller has already withdrawn."""
        with self._lock:
            if self._withdrawn or self._answer is not None:
                return False
            self._answer = admission
            done = self._done
        if done is not None:
            done.set()
        if self._on_answer is not None:
            self._on_answer(admission)
        return True

    def withdraw(self) -> bool:
        """Give up waiting; False if an answer has already been taken."""
        with self._lock:
            if self._answer is not None:
                return False
            self._withdrawn = True
            return True

    def wait(self, timeout: float) -> Admission | None:
        """Block up to ``timeout`` seconds for the answer (never on an event loop)."""
        with self._lock:
            if self._answer is not None:
                return self._answer
            if self._done is None:
                self._done = threading.Event()
            done = self._done
        done.wait(timeout)
        return self._answer


class ConnectionHandle:
    """The shell's grip on one admitted connection; safe to use from any thread.

    The supervisor rebinds it to a new manager when it restarts a crashed one.
    After :meth:`closed`, :meth:`deliver` does nothing, so a late frame can
    never reach a manager that is already serving another connection. With
    ``inline`` (a handler that ``runs_inline``), a frame for a manager that
    is idle is handled on the thread that delivers it
    (:func:`~actors.mailbox.tell_here`). With ``supervisor_turn`` > 0, a
    close or timeout finds an idle supervisor and frees the slot on the
    calling thread, in a turn of up to that many messages.
    """

    def __init__(
        self,
        context: UserExecutionContext,
        supervisor: pykka.ActorRef[Any],
        manager: pykka.ActorRef[Any],
        stats: ManagerStats,
        clock: Clock,
        *,
        inline: bool = False,
        supervisor_turn: int = 0,
    ) -> None:
        self.context = context
        self.stats = stats
        self._supervisor = supervisor
        self._manager: pykka.ActorRef[Any] | None = manager
        self._clock = clock
        self._frame_turn = 1 if inline else 0  # a frame at a time; 0: always the worker
        self._supervisor_turn = supervisor_turn

    @property
    def websocket_id(self) -> str:
        """The connection's id (from its context)."""
        return self.context.websocket_id

    def deliver(self, text: str) -> None:
        """Hand one inbound text frame to the connection's manager."""
        manager = self._manager
        if manager is None:
            return
        message = Inbound(self.context.websocket_id, text)
        if not tell_here(manager, message, self._frame_turn):
            self._to_supervisor(message)  # crashed: the supervisor forwards to the restart

    def heartbeat(self) -> None:
        """Record a keepalive sign of life (a pong) for this connection."""
        self.stats.last_seen = self._clock.monotonic()

    def closed(self, code: int | None = None) -> None:
        """Report that the connection has closed; the slot is freed at once."""
        if self._manager is None:
            return
        self._manager = None
        self._to_supervisor(
            ConnectionClosed(self.context.websocket_id, self._clock.monotonic(), code)
        )

    def peer_gone(self) -> None:
        """Report that the peer is gone: only its slot is freed, at once.

        :meth:`closed` must follow; it does the rest. Between the two the
        connection shows as closing.
        """
        if self._manager is not None:
            self._to_supervisor(PeerGone(self.context.websocket_id, self._clock.monotonic()))

    def timed_out(self) -> None:
        """Report a timeout seen by the shell: the connection is reaped (4003)."""
        if self._manager is not None:
            self._to_supervisor(ReapConnection(self.context.websocket_id, "timeout"))

    @property
    def is_open(self) -> bool:
        """False once :meth:`closed` has been called."""
        return self._manager is not None

    def rebind(self, manager: pykka.ActorRef[Any]) -> None:
        """Point at a restarted manager (supervisor thread only)."""
        if self._manager is not None:
            self._manager = manager

    def _to_supervisor(self, message: Inbound | object) -> None:
        # a dead supervisor's failure handling closes this connection
        tell_here(self._supervisor, message, self._supervisor_turn)


class QueuePort:
    """A port for threaded code: frames go into a :class:`queue.Queue`.

    The owner reads :attr:`frames`. With ``confirm_close`` (the default) a
    close from the supervisor is confirmed at once through the bound handle,
    as a real connection confirms its closing handshake; without it the
    close stays unconfirmed, as with a peer that never answers.
    """

    def __init__(self, confirm_close: bool = True) -> None:
        self.frames: queue.Queue[str] = queue.Queue()
        self.close_code: int | None = None
        self.close_reason: str | None = None
        self._closed = threading.Event()
        self._confirm = confirm_close
        self._handle: ConnectionHandle | None = None

    def bind(self, handle: ConnectionHandle) -> None:
        """Attach the handle that the admission returned."""
        self._handle = handle
        if self._closed.is_set() and self._confirm:
            handle.closed(self.close_code)

    def send_text(self, text: str) -> None:
        if not self._closed.is_set():
            self.frames.put(text)

    def close(self, code: int, reason: str) -> None:
        if self._closed.is_set():
            return
        self.close_code, self.close_reason = code, reason
        self._closed.set()
        if self._confirm and self._handle is not None:
            self._handle.closed(code)

    def wait_closed(self, timeout: float) -> int | None:
        """Wait for the supervisor to close this port; the close code, or None."""
        self._closed.wait(timeout)
        return self.close_code

    @property
    def is_closed(self) -> bool:
        """True once the supervisor has closed this port."""
        return self._closed.is_set()
