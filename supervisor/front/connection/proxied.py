"""ProxiedConnection: an AcyclicConnection that first reads a trusted proxy's PROXY header."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, ClassVar, cast

from supervisor.front.connection.acyclic import AcyclicConnection
from supervisor.front.proxy import (
    MAX_PROXY_HEADER,
    BadProxyHeader,
    TrustedProxies,
    parse_proxy_header,
)

__all__ = ["ProxiedConnection", "proxied_connection"]

log = logging.getLogger(__name__)


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

    @property
    def peer_address(self) -> Any:
        """The socket's own peer: the proxy, when a PROXY header named the client."""
        return self._front.peer_address

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        peer = self._front.peer_address = transport.get_extra_info("peername")
        host = str(peer[0]) if isinstance(peer, tuple | list) and peer else ""
        if self.proxies.expects_header(host):
            self._front.proxy_buffer = bytearray()  # None: nothing (more) to strip

    @property
    def remote_address(self) -> Any:
        """The client: the PROXY header's source, else the socket's peer."""
        client = self._front.client
        if client is not None:
            return client
        return super().remote_address

    def data_received(self, data: bytes) -> None:
        buffer = self._front.proxy_buffer
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
        self._front.proxy_buffer = None
        self._front.client = header.client
        rest = bytes(buffer[header.length :])
        if rest:
            super().data_received(rest)

    def eof_received(self) -> bool:  # type: ignore[override]
        self._front.proxy_buffer = None  # an EOF before the header: the handshake sees no request
        return super().eof_received()

    def _drop(self, reason: str) -> None:
        self._front.proxy_buffer = None
        log.warning("dropped a connection from proxy %s: %s", self.peer_address, reason)
        self.transport.abort()  # connection_lost follows; the handshake ends with no answer


def proxied_connection(proxies: TrustedProxies) -> type[ProxiedConnection]:
    """The connection class for ``serve(create_connection=...)`` that believes ``proxies``."""
    attributes = {"proxies": proxies, "__doc__": ProxiedConnection.__doc__}
    return cast(
        type[ProxiedConnection], type("ProxiedConnection", (ProxiedConnection,), attributes)
    )
