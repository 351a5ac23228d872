"""The one module of the front that touches websockets' and asyncio's internals.

- :class:`AcyclicConnection` drops, once its connection is lost, asyncio's
  socket transport's ``_read_ready_cb`` (a bound method of the transport
  itself) and websockets' ``Protocol.parser`` (a suspended generator) and
  ``parser_exc``'s traceback, and overrides ``eof_received`` and
  ``connection_lost``. It also carries out the connection's byte budget
  (:class:`~supervisor.front.budget.ConnectionBudget`), which needs the
  protocol's own hooks: ``data_received`` (the handshake's bytes, the write
  buffer's ceiling), ``process_event`` (control frames count toward the
  message rate), ``pause_writing``/``resume_writing`` (reading pauses while
  writing is) and the assembler's ``resume`` (``recv_messages``); and
  its frame queue (``recv_messages.frames.queue``): while it is empty, a
  whole text frame goes from ``process_event`` straight to the front's
  inlet (:meth:`AcyclicConnection.take_frames`), no task woken for it;
- :func:`ping_nowait` writes a keepalive ping without waiting for the
  peer to drain (websockets' ``pending_pings``, ``protocol.send_ping``,
  ``send_data``);
- :class:`ProxiedConnection` (made by :func:`proxied_connection`) strips
  the PROXY header a trusted proxy opens the connection with, before
  websockets' HTTP parser sees a byte, and makes its source the
  connection's ``remote_address``;
- :func:`running_loop` is ``asyncio._get_running_loop``: the running loop
  or None, without the exception ``get_running_loop`` raises off a loop;
- :func:`adopt` resumes a TCP connection that another process accepted
  (``ws-supervisor serve --workers N``: the master reads the request head
  and hands over the socket and the bytes read) as a connection of a
  websockets server, through the factory that ``serve()`` gave asyncio
  (``asyncio.Server._protocol_factory``) and the loop's own
  ``_make_socket_transport``, exactly as asyncio builds an accepted one;
- :meth:`AcyclicConnection.call_when_answered` reads websockets'
  ``ServerConnection.response`` once its ``handshake`` ends, and sees that
  handshake cancelled (``open_timeout``).

Those names were read in websockets :data:`WEBSOCKETS_SERIES` and CPython
3.11 to 3.13; importing this module with another websockets major release
raises ImportError, and a test checks that each attribute is still there.
"""

from __future__ import annotations

import asyncio
import http
import importlib.metadata
import logging
import random
import socket
import struct
import weakref
from collections.abc import Callable, Generator
from typing import Any, ClassVar, cast

from websockets.asyncio.server import Server, ServerConnection
from websockets.frames import Frame, Opcode
from websockets.protocol import CONNECTING, OPEN, Event

from actors.codes import ServerCloseCode
from supervisor.front.budget import ConnectionBudget
from supervisor.front.limits import InboundRateLimit
from supervisor.front.proxy import (
    MAX_PROXY_HEADER,
    BadProxyHeader,
    TrustedProxies,
    parse_proxy_header,
)

__all__ = [
    "WEBSOCKETS_SERIES",
    "AcyclicConnection",
    "ProxiedConnection",
    "adopt",
    "check_websockets",
    "ping_nowait",
    "proxied_connection",
    "running_loop",
]

log = logging.getLogger(__name__)

WEBSOCKETS_SERIES = 17
"""The websockets major release whose internals this module was written against."""


def check_websockets(version: str) -> None:
    """ImportError unless ``version`` is of :data:`WEBSOCKETS_SERIES`."""
    if version.split(".", maxsplit=1)[0] != str(WEBSOCKETS_SERIES):
        raise ImportError(
            f"ws-supervisor's front needs websockets {WEBSOCKETS_SERIES}.x, whose internals "
            f"it relies on (supervisor/front/connection.py); websockets {version} is installed"
        )


check_websockets(importlib.metadata.version("websockets"))


running_loop: Callable[[], asyncio.AbstractEventLoop | None] = asyncio._get_running_loop
"""The event loop running on this thread, or None (never raises); asyncio's own, no wrapper."""


def ping_nowait(connection: ServerConnection) -> asyncio.Future[float] | None:
    """Loop: write a ping to ``connection`` now; the future its pong completes, or None if closed.

    websockets' ``ping()`` waits for the peer to drain what is buffered
    first, so one peer that does not read would hold up whoever pings it.
    This writes the ping behind whatever is buffered and returns at once:
    a peer that does not read never answers, and that is what the caller
    checks. The future fails with ``ConnectionClosed`` if the connection
    is lost first (websockets' ``connection_lost`` ends every pending ping).
    """
    if connection.protocol.state is not OPEN:
        return None
    data = struct.pack("!I", random.getrandbits(32))
    while data in connection.pending_pings:
        data = struct.pack("!I", random.getrandbits(32))
    pong: asyncio.Future[float] = connection.loop.create_future()
    connection.pending_pings[data] = (pong, connection.loop.time())
    connection.protocol.send_ping(data)
    try:
        connection.send_data()
    except Exception as error:  # the transport is gone: connection_lost follows and ends the ping
        connection.set_connection_exc(error)
    return pong


def _spent() -> Generator[None]:
    yield  # pragma: no cover - never stepped: the connection is lost


_SPENT = _spent()
"""What a lost connection's protocol keeps as its parser (nothing steps it again)."""


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

    _lost_callback: Callable[[bool], None] | None = None
    _prefix = b""

    handed_user: str | None = None
    """The user id the master established, for a connection handed over by :func:`adopt`.

    None for a connection this process accepted itself; "" for one handed
    over before any user was established (a request that is no upgrade).
    """

    _answered_callback: Callable[[int | None, bool], None] | None = None

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
        self._answered_callback = callback

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
        callback, self._answered_callback = self._answered_callback, None
        if callback is not None:
            callback(status, dropped)

    budget: ConnectionBudget | None = None
    """The byte budget this connection is held to (set per front by :meth:`bounded`)."""
    _rate: InboundRateLimit | None = None
    _shed: Callable[[int, str], None] | None = None
    _handshake_bytes = 0
    _control_frames = 0  # ping and pong frames of the read being processed
    _write_paused = False
    _overflowed = False  # over a budget: nothing more is read or handled

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
        self._rate = rate
        self._shed = shed

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Loop: as websockets', with the assembler's resume held back while writing is
        paused; then the bytes the master read, if handed over (:func:`adopt`).

        asyncio adds the socket's reader only after this, so the bytes read
        by the master are always parsed first, and count toward the
        handshake's bytes as any others.
        """
        super().connection_made(transport)
        resume, held = self.recv_messages.resume, weakref.ref(self)  # weakly: no cycle

        def resume_if_writable() -> None:
            connection = held()
            if connection is not None and not (connection._write_paused or connection._overflowed):
                resume()

        self.recv_messages.resume = resume_if_writable
        prefix = self._prefix
        if prefix:
            self._prefix = b""
            self.data_received(prefix)

    def data_received(self, data: bytes) -> None:
        """Loop: websockets' parsing, within the handshake's bytes and the write buffer's ceiling.

        Before the upgrade, a client that sends more than
        ``max_handshake_bytes`` gets 431 (its head is not complete yet) or
        is cut (it sends frames before the 101). After parsing, a write
        buffer over the ceiling (pongs that a peer does not read) closes it.
        """
        if self._overflowed:
            return  # closing: nothing more is parsed, answered or handed on
        budget = self.budget
        if budget is not None and self.protocol.state is CONNECTING:
            self._handshake_bytes += len(data)
            if budget.handshake_over(self._handshake_bytes):
                self._refuse_handshake(budget)
                return
        self._control_frames = 0
        super().data_received(data)
        buffered = self.transport.get_write_buffer_size()
        if budget is not None and not self._overflowed and budget.write_over(buffered):
            self._over(*budget.write_overflow(self._control_frames))

    _inlet: Callable[[str], None] | None = None

    def take_frames(self, inlet: Callable[[str], None] | None) -> None:
        """Loop, once open: hand each whole text frame to ``inlet`` as it is parsed.

        Not through websockets' assembler and ``recv``: no queue, no task
        woken per frame. Only while nothing waits in the assembler (a
        fragmented or binary message, or one before this call), so messages
        keep their order; a frame that is not valid UTF-8 goes there too, to
        fail the connection with 1007 as websockets does. None: no more.
        """
        self._inlet = inlet

    def process_event(self, event: Event) -> None:
        """Loop: one event parsed; a ping or a pong first pays the message rate."""
        if self._overflowed:
            return
        inlet = self._inlet
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
            self._control_frames += 1  # its pong (for a ping) is written already
            rate = self._rate
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
        self._write_paused = True
        self.transport.pause_reading()

    def resume_writing(self) -> None:
        """Loop: the peer has read: read it again (unless the assembler or a budget holds it)."""
        super().resume_writing()
        self._write_paused = False
        if not self._overflowed and not self.recv_messages.paused:
            self.transport.resume_reading()

    def _over(self, code: int, reason: str) -> None:
        """Over a budget: read nothing more; close with ``code`` (or cut, before the upgrade)."""
        self._overflowed = True
        self.transport.pause_reading()
        if self._shed is not None and self.protocol.state is OPEN:
            self._shed(code, reason)
        else:
            self.transport.abort()

    def _refuse_handshake(self, budget: ConnectionBudget) -> None:
        if self.request is not None:  # frames before the 101: no answer is owed
            self._over(int(ServerCloseCode.POLICY), "data before the handshake's end")
            return
        self._overflowed = True  # what it still sends is read and dropped, never kept
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
        self._lost_callback = callback
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
        owned = self._lost_callback is not None  # its owner closes the transport
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
            self._rate = self._shed = self._inlet = None  # they hold the port, which holds us
            self._peer_gone()

    def _peer_gone(self) -> None:
        callback, self._lost_callback = self._lost_callback, None  # it holds this connection
        if callback is not None:
            callback(self.protocol.close_rcvd is None)


def adopt(server: Server, sock: socket.socket, prefix: bytes, handed_user: str) -> None:
    """Loop: resume ``sock``, whose first bytes ``prefix`` were read elsewhere, on ``server``.

    From here on it is an ordinary connection of ``server`` (a websockets
    server whose ``create_connection`` is :class:`AcyclicConnection`): the
    same protocol factory as an accepted one (so the same handshake hook,
    origins, compression and limits), its ``handed_user`` set, and a
    transport built as asyncio builds an accepted connection's, without the
    task asyncio's accept path runs for it. A server that is no longer
    serving answers the handshake 503 itself.
    """
    listening = server.server
    connection = listening._protocol_factory()  # type: ignore[attr-defined]
    assert isinstance(connection, AcyclicConnection)  # the server's create_connection
    connection._prefix = prefix
    connection.handed_user = handed_user
    sock.setblocking(False)
    loop = listening.get_loop()
    owner = listening if listening.is_serving() else None  # a closed server takes no more
    loop._make_socket_transport(sock, connection, server=owner)  # type: ignore[attr-defined]


class ProxiedConnection(AcyclicConnection):
    """A connection that first reads the PROXY header of a trusted proxy (on the event loop).

    A subclass made by :func:`proxied_connection` names the proxies to
    believe. When the socket's peer is one that must send a PROXY header,
    ``data_received`` keeps the first bytes until :func:`parse_proxy_header`
    has a complete header, then hands websockets' HTTP parser only what
    follows it (usually the request, in the same segment). Its source becomes
    :attr:`remote_address`, for the handshake limits, the logs and the
    state dump; a LOCAL or UNKNOWN header (a health check) leaves the
    socket's peer standing. A malformed header, one over the byte limit, or a
    trusted peer that sends none, is dropped at once (``transport.abort()``,
    a warning naming the peer); one that never completes is dropped by
    websockets' ``open_timeout``, which bounds the whole handshake. No slot
    is ever taken before the header is read. A peer that is not such a proxy
    is passed through untouched, at the cost of one attribute test per read.
    """

    proxies: ClassVar[TrustedProxies] = TrustedProxies()
    max_header: ClassVar[int] = MAX_PROXY_HEADER

    _proxy_buffer: bytearray | None = None  # None: nothing (more) to strip
    _client: tuple[str, int] | None = None
    peer_address: Any = None
    """The socket's own peer: the proxy, when a PROXY header named the client."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.peer_address = transport.get_extra_info("peername")
        peer = self.peer_address
        host = str(peer[0]) if isinstance(peer, tuple | list) and peer else ""
        if self.proxies.expects_header(host):
            self._proxy_buffer = bytearray()

    @property
    def remote_address(self) -> Any:
        """The client: the PROXY header's source, else the socket's peer."""
        if self._client is not None:
            return self._client
        return super().remote_address

    def data_received(self, data: bytes) -> None:
        buffer = self._proxy_buffer
        if buffer is None:
            super().data_received(data)
            return
        buffer += data
        header = parse_proxy_header(buffer, self.max_header)
        if header is None:
            if len(buffer) > self.max_header:  # pragma: no cover - the parser refuses first
                self._drop(f"no complete PROXY header in {len(buffer)} bytes")
            return
        if isinstance(header, BadProxyHeader):
            self._drop(header.reason)
            return
        self._proxy_buffer = None
        self._client = header.client
        rest = bytes(buffer[header.length :])
        if rest:
            super().data_received(rest)

    def eof_received(self) -> bool:  # type: ignore[override]
        self._proxy_buffer = None  # an EOF before the header: the handshake sees no request
        return super().eof_received()

    def _drop(self, reason: str) -> None:
        self._proxy_buffer = None
        log.warning("dropped a connection from proxy %s: %s", self.peer_address, reason)
        self.transport.abort()  # connection_lost follows; the handshake ends with no answer


def proxied_connection(proxies: TrustedProxies) -> type[ProxiedConnection]:
    """The connection class for ``serve(create_connection=...)`` that believes ``proxies``."""
    attributes = {"proxies": proxies, "__doc__": ProxiedConnection.__doc__}
    return cast(
        type[ProxiedConnection], type("ProxiedConnection", (ProxiedConnection,), attributes)
    )
