"""The one module of the front that touches websockets' and asyncio's internals.

- :class:`AcyclicConnection` drops, once its connection is lost, asyncio's
  socket transport's ``_read_ready_cb`` (a bound method of the transport
  itself) and websockets' ``Protocol.parser`` (a suspended generator) and
  ``parser_exc``'s traceback, and overrides ``eof_received`` and
  ``connection_lost``;
- :class:`ProxiedConnection` (made by :func:`proxied_connection`) strips
  the PROXY header a trusted proxy opens the connection with, before
  websockets' HTTP parser sees a byte, and makes its source the
  connection's ``remote_address``;
- :func:`running_loop` is ``asyncio._get_running_loop``: the running loop
  or None, without the exception ``get_running_loop`` raises off a loop;
- :meth:`AcyclicConnection.call_when_answered` reads websockets'
  ``ServerConnection.response`` once its ``handshake`` ends, and sees that
  handshake cancelled (``open_timeout``).

Those names were read in websockets :data:`WEBSOCKETS_SERIES` and CPython
3.11 to 3.13; importing this module with another websockets major release
raises ImportError, and a test checks that each attribute is still there.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import logging
from collections.abc import Callable, Generator
from typing import Any, ClassVar, cast

from websockets.asyncio.server import ServerConnection
from websockets.protocol import CONNECTING

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
    "check_websockets",
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


def running_loop() -> asyncio.AbstractEventLoop | None:
    """The event loop running on this thread, or None (never raises)."""
    return asyncio._get_running_loop()


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
    (the peer closed its side) or of ``connection_lost`` (a reset, or the
    end of a closing handshake), whichever comes first, and before any task
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
            self._peer_gone()

    def _peer_gone(self) -> None:
        callback, self._lost_callback = self._lost_callback, None  # it holds this connection
        if callback is not None:
            callback(self.protocol.close_rcvd is None)


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
