"""The edges of the actor world: ports, handlers, handles, stats and tickets.

A :class:`Port` is how a manager reaches its connection; the shell implements
it (sending across to the event loop), so actors never touch the loop. A
:class:`Handle` is what the shell holds for an admitted connection: it
carries frames in and the close out (the tree's is
:class:`actors.handle.ConnectionHandle`). An :class:`AdmissionTicket` carries
the one answer to an admission back to whoever asked, exactly once.
"""

from __future__ import annotations

import queue
import sys
import threading
from collections.abc import Callable
from typing import Protocol

import attrs

from actors.context import UserExecutionContext
from actors.observer import AdmissionResult

__all__ = [
    "INBOUND_OVERHEAD",
    "Admission",
    "AdmissionTicket",
    "Handle",
    "Handler",
    "ManagerStats",
    "Port",
    "QueuePort",
    "inbound_cost",
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


class Handle(Protocol):
    """The shell's grip on one admitted connection; every method is safe from any thread.

    :meth:`deliver` carries an inbound frame to the connection's manager;
    :meth:`closed` reports the end of the connection (the slot is freed at
    once), :meth:`peer_gone` a peer that went without a close (only the
    slot is freed; :meth:`closed` must follow), :meth:`timed_out` a timeout
    the shell saw, :meth:`heartbeat` a sign of life (a pong).
    """

    context: UserExecutionContext
    stats: ManagerStats

    @property
    def websocket_id(self) -> str: ...

    @property
    def is_open(self) -> bool: ...

    def deliver(self, text: str) -> None: ...

    def heartbeat(self) -> None: ...

    def closed(self, code: int | None = None) -> None: ...

    def peer_gone(self) -> None: ...

    def timed_out(self) -> None: ...


INBOUND_OVERHEAD = 256
"""Bytes an inbound message costs in a manager's inbox beyond its text (measured: about 112)."""


def inbound_cost(text: str) -> int:
    """What an inbound frame holds while it waits for its handler: its str and its message."""
    return sys.getsizeof(text) + INBOUND_OVERHEAD


@attrs.define
class ManagerStats:
    """Live counters of one connection.

    Written by the manager (``last_seen`` also by the shell's heartbeat,
    ``inbound_bytes`` only by the handle's :meth:`~Handle.deliver`), read by
    the supervisor, the shell and the state dump. Each counter has one
    writer and plain attribute writes are atomic in CPython; readers may see
    a value one event old.
    """

    connected_at: float
    last_activity: float
    last_seen: float | None = None
    messages_in: int = 0
    messages_out: int = 0
    outbound_queued: int = 0
    restarts: int = 0
    inbound_bytes: int = 0
    """The :func:`inbound_cost` of every frame delivered to the manager (the shell writes it)."""
    inbound_done: int = 0
    """Of those, the cost of the frames it has handled (the manager writes it)."""
    closed_with: int | None = None
    """The code of the first :meth:`~Handle.closed` (the handle writes it); None until then."""

    @property
    def inbound_waiting(self) -> int:
        """Bytes of frames delivered and not yet handled: the manager's backlog."""
        return self.inbound_bytes - self.inbound_done


@attrs.frozen
class Admission:
    """The answer to an admission request."""

    result: AdmissionResult
    handle: Handle | None = None
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
        self._handle: Handle | None = None

    def bind(self, handle: Handle) -> None:
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
