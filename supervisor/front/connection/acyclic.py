"""AcyclicConnection: websockets' server connection, with no cycle left behind, on a budget."""

from __future__ import annotations

import asyncio
import http
from collections.abc import Callable, Generator
from typing import Any, cast

from websockets.asyncio.server import ServerConnection
from websockets.frames import Frame, Opcode
from websockets.protocol import CONNECTING, OPEN, Event

from actors.codes import ServerCloseCode
from supervisor.front.budget import ConnectionBudget
from supervisor.front.limits import InboundRateLimit

__all__ = ["AcyclicConnection"]


def _spent() -> Generator[None]:
    yield  # pragma: no cover - never stepped: the connection is lost


_SPENT = _spent()
"""What a lost connection's protocol keeps as its parser (nothing steps it again)."""


class _State:
    """What the front keeps on one connection: one slotted object, one instance attribute.

    websockets' connection sets 27 attributes in its ``__init__``; CPython
    shares their keys among the instances of a class up to 30 of them. Set
    one by one on the connection, the front's dozen would give every
    connection a dict of its own: 1.6 KiB more per connection (measured
    with tracemalloc at 3,000 connections).
    """

    __slots__ = (
        "answered",
        "client",
        "control_frames",
        "handed_user",
        "handshake_bytes",
        "inlet",
        "lost",
        "overflowed",
        "peer_address",
        "prefix",
        "proxy_buffer",
        "rate",
        "shed",
        "write_paused",
    )

    def __init__(self) -> None:
        self.answered: Callable[[int | None, bool], None] | None = None
        self.lost: Callable[[bool], None] | None = None
        self.inlet: Callable[[str], None] | None = None
        self.rate: InboundRateLimit | None = None
        self.shed: Callable[[int, str], None] | None = None
        self.handed_user: str | None = None
        self.prefix = b""
        self.handshake_bytes = 0
        self.control_frames = 0  # ping and pong frames of the read being processed
        self.write_paused = False
        self.overflowed = False  # over a budget: nothing more is read or handled
        self.peer_address: Any = None  # ProxiedConnection's
        self.proxy_buffer: bytearray | None = None  # ProxiedConnection's
        self.client: tuple[str, int] | None = None  # ProxiedConnection's


class _ResumeIfWritable:
    """The assembler's resume, held back while writing is paused or a budget is over."""

    __slots__ = ("front", "resume")

    def __init__(self, resume: Callable[[], None], front: _State) -> None:
        self.resume, self.front = resume, front

    def __call__(self) -> None:
        front = self.front
        if not (front.write_paused or front.overflowed):
            self.resume()


class AcyclicConnection(ServerConnection):
    """A server connection that leaves no reference cycle behind when it closes.

    Three cycles outlive a closed connection otherwise. asyncio's socket
    transport keeps a bound method of itself (``_read_ready_cb``); the
    websockets protocol keeps its parser, a generator suspended for good
    whose frame holds the protocol; and when the peer goes away without a
    close frame, the protocol keeps the parser's ``EOFError``
    (``parser_exc``), whose traceback holds a parser frame too. Their
    objects (dozens per connection) are then left to the cyclic collector and, since a
    connection usually lives long enough to reach the oldest generation, to
    a full collection, which stops every thread of the daemon: under churn
    such collections grew to ~1.6 s (docs/PERFORMANCE-HISTORY.md). Once the
    connection is lost, the bound method, the parser and the exception's
    traceback (not the exception) are dropped. Runs on the event loop.

    A callback given to :meth:`call_when_lost` is called once (then
    dropped) as soon as the peer is gone: at the end of ``eof_received``
    (the peer closed its side), of ``connection_lost`` (a reset, or the
    end of a closing handshake) or of ``process_event`` for the peer's
    close frame (a peer that then keeps its socket open is gone all the
    same), whichever comes first, and before any task
    that the loss wakes up runs. It is told whether the loss was abrupt: no
    close frame came from the peer (a dropped client), as opposed to the
    end of a closing handshake, which also ends with the peer's EOF.
    The front frees the connection's slot there, so that in a mass
    disconnect the slots are freed as the loop reads the peers' EOFs,
    before the handlers unwind. After an abrupt loss the callback's owner
    must close the transport (``transport.close()``, a no-op after a
    reset): an EOF without a close frame leaves it open, so that the
    connection's teardown (websockets' ``connection_lost``, the handler's
    unwinding) waits until the owner is ready for it.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._front = _State()

    @property
    def handed_user(self) -> str | None:
        """The user id the master established, for a connection handed over by :func:`adopt`.

        None for a connection this process accepted itself; "" for one handed
        over before any user was established (a request that is no upgrade).
        """
        return self._front.handed_user

    def hand_over(self, prefix: bytes, handed_user: str) -> None:
        """Before ``connection_made``: the bytes read by the master, and the user it established."""
        self._front.prefix, self._front.handed_user = prefix, handed_user

    def call_when_answered(self, callback: Callable[[int | None, bool], None]) -> None:
        """Loop: call ``callback(status, dropped)`` once, when the opening handshake ends.

        ``status`` is the HTTP status of the answer (101 for an upgrade),
        the one websockets finally sent: its own 503 while the server shuts
        down included. ``dropped`` is True when the handshake was cancelled
        before any answer (``open_timeout``); ``status`` is then None.
        Call it from ``process_request``, which websockets calls once the
        request has been read: a request that never comes complete is
        never reported.
        """
        self._front.answered = callback

    async def handshake(self, *args: Any, **kwargs: Any) -> None:
        """Loop: websockets' opening handshake, then its answer reported (see above)."""
        try:
            await super().handshake(*args, **kwargs)
        except asyncio.CancelledError:
            self._answered(None, dropped=True)
            raise
        response = self.response
        self._answered(None if response is None else response.status_code, dropped=False)

    def _answered(self, status: int | None, *, dropped: bool) -> None:
        front = self._front
        callback, front.answered = front.answered, None
        if callback is not None:
            callback(status, dropped)

    budget: ConnectionBudget | None = None
    """The byte budget this connection is held to (set per front by :meth:`bounded`)."""

    @classmethod
    def bounded(cls, budget: ConnectionBudget) -> type[AcyclicConnection]:
        """This class, held to ``budget`` (the ``create_connection`` of one front)."""
        return type("BoundedConnection", (cls,), {"budget": budget, "__module__": __name__})

    def guard(self, rate: InboundRateLimit | None, shed: Callable[[int, str], None]) -> None:
        """Loop, once admitted: count control frames in ``rate``; close through ``shed``.

        ``rate`` is the connection's message rate: a ping or a pong costs
        what a message does. ``shed(code, reason)`` closes the connection
        at once (the port's shed: a close frame, and an abort if it stalls).
        """
        self._front.rate, self._front.shed = rate, shed

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Loop: as websockets', with the assembler's resume held back while writing is
        paused; then the bytes the master read, if handed over (:func:`adopt`).

        asyncio adds the socket's reader only after this, so the bytes read
        by the master are always parsed first, and count toward the
        handshake's bytes as any others.
        """
        super().connection_made(transport)
        front = self._front  # it holds no connection: no cycle
        self.recv_messages.resume = _ResumeIfWritable(self.recv_messages.resume, front)
        prefix = front.prefix
        if prefix:
            front.prefix = b""
            self.data_received(prefix)

    def data_received(self, data: bytes) -> None:
        """Loop: websockets' parsing, within the handshake's bytes and the write buffer's ceiling.

        Before the upgrade, a client that sends more than
        ``max_handshake_bytes`` gets 431 (its head is not complete yet) or
        is cut (it sends frames before the 101). After parsing, a write
        buffer over the ceiling (pongs that a peer does not read) closes it.
        """
        front = self._front
        if front.overflowed:
            return  # closing: nothing more is parsed, answered or handed on
        budget = self.budget
        if budget is not None and self.protocol.state is CONNECTING:
            front.handshake_bytes += len(data)
            if budget.handshake_over(front.handshake_bytes):
                self._refuse_handshake(budget)
                return
        front.control_frames = 0
        super().data_received(data)
        buffered = self.transport.get_write_buffer_size()
        if budget is not None and not front.overflowed and budget.write_over(buffered):
            self._over(*budget.write_overflow(front.control_frames))

    def take_frames(self, inlet: Callable[[str], None] | None) -> None:
        """Loop, once open: hand each whole text frame to ``inlet`` as it is parsed.

        Not through websockets' assembler and ``recv``: no queue, no task
        woken per frame. Only while nothing waits in the assembler (a
        fragmented or binary message, or one before this call), so messages
        keep their order; a frame that is not valid UTF-8 goes there too, to
        fail the connection with 1007 as websockets does. None: no more.
        """
        self._front.inlet = inlet

    def process_event(self, event: Event) -> None:
        """Loop: one event parsed; a ping or a pong first pays the message rate."""
        front = self._front
        if front.overflowed:
            return
        inlet = front.inlet
        if inlet is not None:  # open: every event is a frame
            frame = cast(Frame, event)
            if frame.opcode is Opcode.TEXT and frame.fin and not self.recv_messages.frames.queue:
                try:
                    text = str(frame.data, "utf-8")
                except UnicodeDecodeError:
                    pass
                else:
                    inlet(text)
                    return
        if isinstance(event, Frame) and event.opcode in (Opcode.PING, Opcode.PONG):
            front.control_frames += 1  # its pong (for a ping) is written already
            rate = front.rate
            if rate is not None and not rate.allow():
                self._over(int(ServerCloseCode.POLICY), "control frame rate exceeded")
                return
        super().process_event(event)
        if isinstance(event, Frame) and event.opcode is Opcode.CLOSE:
            self._peer_gone()  # it said goodbye: gone now, whenever it closes its socket

    def pause_writing(self) -> None:
        """Loop: the peer reads slower than we write: stop reading it too.

        No more frames are parsed (nor pings answered) until it has read
        what waits, so a peer that does not read cannot make us buffer more.
        """
        super().pause_writing()
        self._front.write_paused = True
        self.transport.pause_reading()

    def resume_writing(self) -> None:
        """Loop: the peer has read: read it again (unless the assembler or a budget holds it)."""
        super().resume_writing()
        self._front.write_paused = False
        if not self._front.overflowed and not self.recv_messages.paused:
            self.transport.resume_reading()

    def _over(self, code: int, reason: str) -> None:
        """Over a budget: read nothing more; close with ``code`` (or cut, before the upgrade)."""
        front = self._front
        front.overflowed = True
        self.transport.pause_reading()
        if front.shed is not None and self.protocol.state is OPEN:
            front.shed(code, reason)
        else:
            self.transport.abort()

    def _refuse_handshake(self, budget: ConnectionBudget) -> None:
        if self.request is not None:  # frames before the 101: no answer is owed
            self._over(int(ServerCloseCode.POLICY), "data before the handshake's end")
            return
        self._front.overflowed = True  # what it still sends is read and dropped, never kept
        status = http.HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE
        text = f"Failed to open a WebSocket connection: more than {budget.max_handshake_bytes} "
        response = self.protocol.reject(status, text + "bytes of request line and headers.\n")
        self.protocol.send_response(response)  # then the end of our stream: the client leaves
        self.send_data()  # (closing now would reset a client still sending: it would lose this)

    def call_when_lost(self, callback: Callable[[bool], None]) -> None:
        """Loop: call ``callback`` once the peer is gone; at once if it is gone already.

        A connection can be lost while the front waits for its slot: its
        ``connection_lost`` has then run with no callback to call.
        """
        self._front.lost = callback
        if self.connection_lost_waiter.done():
            self._peer_gone()

    def eof_received(self) -> bool:  # type: ignore[override]
        """Loop: the peer closed its side; True keeps the transport open (asyncio's contract).

        A peer gone without a close frame leaves nothing to read or answer:
        websockets' ``connection_lost``, which follows the transport's close,
        feeds the EOF to the protocol. Leaving it there, and the close to
        the callback's owner, takes the teardown out of the loop's pass over
        a batch of EOFs, in which every slot is then freed.
        """
        if self.protocol.state is CONNECTING or self.protocol.close_rcvd is not None:
            super().eof_received()
            self._peer_gone()
            return False
        owned = self._front.lost is not None  # its owner closes the transport
        self._peer_gone()
        return owned

    def connection_lost(self, exc: Exception | None) -> None:
        try:
            super().connection_lost(exc)
        finally:
            if getattr(self.transport, "_read_ready_cb", None) is not None:
                self.transport._read_ready_cb = None  # type: ignore[attr-defined]
            if self.protocol.parser_exc is not None:
                self.protocol.parser_exc.__traceback__ = None
            self.protocol.parser = _SPENT  # its suspended frame holds the protocol
            front = self._front
            front.rate = front.shed = front.inlet = None  # they hold the port, which holds us
            self._peer_gone()

    def _peer_gone(self) -> None:
        front = self._front
        callback, front.lost = front.lost, None  # it holds this connection
        if callback is not None:
            callback(self.protocol.close_rcvd is None)
