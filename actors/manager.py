"""The manager actor: one per connection, reusable through the pool."""

from __future__ import annotations

import collections
import logging
from types import TracebackType
from typing import Any

import pykka

from actors._runtime.dispatch import DispatchedActor, Dispatcher
from actors.clock import Clock
from actors.context import UserExecutionContext
from actors.errors import InjectedFault
from actors.messages import (
    Attach,
    ChildFailed,
    ChildStopped,
    Crash,
    Detach,
    Inbound,
    ManagerIdle,
    Outbound,
)
from actors.policies.pool import PoolPolicy
from actors.ports import Handler, ManagerStats, Port, inbound_cost

__all__ = ["ManagerActor"]

log = logging.getLogger(__name__)

_NO_POOL_LIMIT = PoolPolicy(size=0, idle_seconds=0.0)
"""A manager started without a pool policy may be reused without a limit on its uses."""


class ManagerActor(DispatchedActor):
    """Serves one connection at a time: runs the handler, sends through the port.

    States: ``disconnected`` (idle, in the pool or new), ``connecting`` (being
    attached), ``connected``, ``closing``. It has no thread of its own: it
    runs on the tree's :class:`~actors._runtime.dispatch.Dispatcher`. ``__init__``
    runs on the supervisor's thread; every other hook on a dispatcher worker,
    one at a time, except that an attach, a detach or a stop that finds it
    asleep runs in the supervisor's turn, on the supervisor's worker
    (:func:`~actors._runtime.mailbox.tell_here`), and a frame for a handler
    that runs inline that finds it asleep runs in a turn on the event loop
    (:meth:`handle_frame`, from ``ConnectionHandle.deliver``). A crash tells the supervisor from
    ``on_failure``; the end of the actor from ``on_stop``: these two
    messages are the link pykka does not have.
    """

    def __init__(
        self,
        supervisor: pykka.ActorRef[Any],
        clock: Clock,
        dispatcher: Dispatcher,
        pool: PoolPolicy | None = None,
    ) -> None:
        super().__init__(dispatcher)
        self._supervisor = supervisor
        self._clock = clock
        self._pool = pool if pool is not None else _NO_POOL_LIMIT
        self.served = 0
        """Connections attached to this manager so far."""
        self._crashed = False  # the connection it last served saw its handler crash
        self.state = "disconnected"
        self.context: UserExecutionContext | None = None
        self._port: Port | None = None
        self._stats: ManagerStats | None = None
        self._handler: Handler | None = None
        self._outbound: collections.deque[str] = collections.deque()

    def receive(self, message: Any) -> Any:
        """A frame, an attach or a detach goes straight to its method; any other as pykka routes it.

        Runs in the actor's turn, on whichever thread gives it (see the class).
        """
        kind = type(message)
        if kind is Inbound:  # the one message a connection sends by the thousand
            self.frame(message.websocket_id, message.text)
        elif kind is Attach:  # one each per connection, in its supervisor's turn
            self._attach(message)
        elif kind is Detach:
            self._detach()
        else:
            return super().receive(message)
        return None

    def on_receive(self, message: Any) -> Any:
        """Runs in the actor's turn for every message :meth:`receive` does not take itself."""
        if isinstance(message, Outbound):
            if self._is_current(message.websocket_id):
                self.send(message.text)
        elif isinstance(message, Crash):
            raise InjectedFault(message.reason)
        return None

    def _attach(self, message: Attach) -> None:
        self.reset_for_new_connection(message.context, message.port, message.stats)
        self._handler = message.handler

    def reset_for_new_connection(
        self, context: UserExecutionContext, port: Port, stats: ManagerStats
    ) -> None:
        """Take on a new connection, keeping nothing of the previous one."""
        self.state = "connecting"
        self.served += 1
        self._crashed = False
        self.context = context
        self._port = port
        self._stats = stats
        self._outbound.clear()
        self.state = "connected"
        self._flush()

    def is_reusable(self) -> bool:
        """May this manager serve another connection? :meth:`PoolPolicy.reusable` decides.

        Not while anything of a connection is left in it (its state,
        context, port, counters, handler or queued frames), not after a
        connection whose handler crashed, and not once it has served the
        pool's ``max_uses`` connections.
        """
        holds_state = (
            self.state != "disconnected"
            or self.context is not None
            or self._port is not None
            or self._stats is not None
            or self._handler is not None
            or bool(self._outbound)
        )
        return self._pool.reusable(
            served=self.served, crashed=self._crashed, holds_state=holds_state
        )

    def send(self, text: str) -> None:
        """Send one frame to the client, or hold it until the manager is connected.

        With nothing held ahead of it, it goes straight to the port.
        """
        port, stats = self._port, self._stats
        if self._outbound or self.state != "connected" or port is None or stats is None:
            self._outbound.append(text)
            self._flush()
            return
        self._sent(stats, 1)  # first: a reader of the counters never sees the frame uncounted
        port.send_text(text)

    def _flush(self) -> None:
        port, stats = self._port, self._stats
        if self.state != "connected" or port is None or stats is None or not self._outbound:
            return
        self._sent(stats, len(self._outbound))
        while self._outbound:
            port.send_text(self._outbound.popleft())

    def _sent(self, stats: ManagerStats, count: int) -> None:
        stats.messages_out += count
        stats.outbound_queued = 0
        stats.last_activity = self._clock.monotonic()

    def frame(self, websocket_id: str, text: str) -> None:
        """The body of an :class:`~actors.messages.Inbound` message: the frame handled.

        Then its :func:`~actors.ports.inbound_cost` no longer waits in the
        inbox (``inbound_done``), handled or lost with a crash.
        """
        stats = self._stats if self._is_current(websocket_id) else None
        try:
            self.handle_frame(websocket_id, text)
        finally:
            if stats is not None:
                stats.inbound_done += inbound_cost(text)

    def handle_frame(self, websocket_id: str, text: str) -> None:
        """One inbound frame of connection ``websocket_id``: the handler runs on it.

        From :meth:`frame`, or as a turn of its own on the delivering
        thread (``ConnectionHandle.deliver``), where it never waited.
        """
        context, stats, handler = self.context, self._stats, self._handler
        if context is None or context.websocket_id != websocket_id:
            return  # a late frame of a previous connection: never cross connections
        assert stats is not None and handler is not None
        now = self._clock.monotonic()
        stats.messages_in += 1
        stats.last_activity = now
        if stats.last_seen is not None:
            stats.last_seen = now  # a frame is a sign of life too
        handler(context, text, self.send)

    def _is_current(self, websocket_id: str) -> bool:
        return self.context is not None and self.context.websocket_id == websocket_id

    def _detach(self) -> None:
        self.state = "closing"
        # a connection whose manager was restarted after a crash: this one is its replacement
        self._crashed = self._stats is not None and self._stats.restarts > 0
        self.context = None
        self._port = None
        self._stats = None
        self._handler = None
        self._outbound.clear()
        self.state = "disconnected"
        self._tell_supervisor(ManagerIdle(self.actor_urn, self.is_reusable()))

    def on_failure(
        self,
        exception_type: type[BaseException] | None,
        exception_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Runs on a dispatcher worker after a crash: tell the supervisor."""
        if self.context is not None:
            websocket_id = self.context.websocket_id
            pending = tuple(self._drain_inbox(websocket_id))
            failed = ChildFailed(websocket_id, self.actor_urn, repr(exception_value), pending)
            self._tell_supervisor(failed)

    def _drain_inbox(self, websocket_id: str) -> list[Inbound | Outbound]:
        """The frames for ``websocket_id`` left in the inbox (the actor has stopped)."""
        found: list[Inbound | Outbound] = []
        while not self.actor_inbox.empty():
            message = self.actor_inbox.get().message
            if isinstance(message, Inbound | Outbound) and message.websocket_id == websocket_id:
                found.append(message)
        return found

    def on_stop(self) -> None:
        """Runs on a dispatcher worker just before the actor ends."""
        self._tell_supervisor(ChildStopped(self.actor_urn))

    def _tell_supervisor(self, message: object) -> None:
        try:
            self._supervisor.tell(message)
        except pykka.ActorDeadError:
            log.debug("manager %s: supervisor already stopped", self.actor_urn)
