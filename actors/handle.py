"""The tree's handle on an admitted connection: frames in, the close out.

What the shell holds for each connection the tree admitted (it implements
:class:`actors.ports.Handle`). It sends the connection's inbound frames to
its manager and its close, loss or timeout to its user supervisor, each as
a message of :mod:`actors.messages`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pykka

from actors._runtime.mailbox import Mailbox, tell_here
from actors.clock import Clock
from actors.context import UserExecutionContext
from actors.manager import ManagerActor
from actors.messages import ConnectionClosed, Inbound, PeerGone, ReapConnection
from actors.ports import Handle, ManagerStats, inbound_cost

__all__ = ["ConnectionHandle", "MisreportingHandle"]


class ConnectionHandle:
    """The shell's grip on one admitted connection; safe to use from any thread.

    The supervisor rebinds it to a new manager when it restarts a crashed one.
    After :meth:`closed`, :meth:`deliver` does nothing, so a late frame can
    never reach a manager that is already serving another connection. With
    ``inline`` (a handler that ``runs_inline``), a frame for a manager that
    is idle is handled on the thread that delivers it
    (:func:`~actors._runtime.mailbox.tell_here`). With ``supervisor_turn`` > 0, a
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
        self._frame_call = _frame_call(manager) if inline else None
        self._supervisor_turn = supervisor_turn

    @property
    def websocket_id(self) -> str:
        """The connection's id (from its context)."""
        return self.context.websocket_id

    def deliver(self, text: str) -> None:
        """Hand one inbound text frame to the connection's manager.

        A frame that waits in the manager's inbox has its
        :func:`~actors.ports.inbound_cost` added to the stats'
        ``inbound_bytes`` (the manager counts it done once handled), so the
        shell can see the backlog; one handled here, at once, never waited.
        Called by one thread per connection.
        """
        manager = self._manager
        if manager is None:
            return
        call = self._frame_call
        if call is not None:  # an idle manager's turn here, with no message: the frame itself
            inbox = manager.actor_inbox
            if isinstance(inbox, Mailbox) and inbox.call_here(call, self.websocket_id, text):
                return  # handled: it never waited
        self.stats.inbound_bytes += inbound_cost(text)
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
        self.stats.closed_with = code
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
            if self._frame_turn:
                self._frame_call = _frame_call(manager)

    def _to_supervisor(self, message: Inbound | object) -> None:
        # a dead supervisor's failure handling closes this connection
        tell_here(self._supervisor, message, self._supervisor_turn)

    def misreporting(self, context: UserExecutionContext) -> MisreportingHandle:
        """Fault injection: this connection's handle, its end reported under ``context``."""
        manager = self._manager
        if manager is None:
            raise ValueError("a closed connection has no end left to report")
        foreign = ConnectionHandle(
            context,
            self._supervisor,
            manager,
            self.stats,
            self._clock,
            supervisor_turn=self._supervisor_turn,
        )
        return MisreportingHandle(self, foreign)


class MisreportingHandle:
    """Fault injection (``[faults] close_under_foreign_id``): an end reported under other ids.

    Frames, signs of life and timeouts go to the connection as through its
    own handle; its close and its loss are reported under another context,
    one its supervisor never admitted, as the seed's cleanup built a new
    context instead of using the connection's. The supervisor counts a
    thread_id mismatch for the close, and the connection's slot stays held
    until a sweep finds it no longer live. Never used but by that fault.
    """

    def __init__(self, handle: Handle, foreign: Handle) -> None:
        self._handle = handle
        self._foreign = foreign
        self.context = handle.context
        self.stats = handle.stats

    @property
    def websocket_id(self) -> str:
        return self._handle.websocket_id

    @property
    def is_open(self) -> bool:
        return self._foreign.is_open

    def deliver(self, text: str) -> None:
        self._handle.deliver(text)

    def heartbeat(self) -> None:
        self._handle.heartbeat()

    def timed_out(self) -> None:
        self._handle.timed_out()

    def closed(self, code: int | None = None) -> None:
        self._foreign.closed(code)

    def peer_gone(self) -> None:
        self._foreign.peer_gone()


def _frame_call(manager: pykka.ActorRef[Any]) -> Callable[[Any, str, str], None] | None:
    """``ManagerActor.handle_frame`` if ``manager`` is one (not a stand-in): a frame as a call."""
    return ManagerActor.handle_frame if issubclass(manager.actor_class, ManagerActor) else None
