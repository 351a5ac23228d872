"""The WebSocket front: identify, admit before the upgrade, then carry frames.

Runs entirely on the event loop. The handshake is answered, in this order,
429 with ``Retry-After`` (too many handshakes from the client's address),
404 (wrong path), 403 (an Origin not in ``[server] origins``), 503 (too many
handshakes in progress), 401 (authentication), 400 (a bad thread id), 429
with ``Retry-After`` (quota full) or 503 (the node at emergency, or no answer
in time) before any upgrade, so a refused client never holds a slot. The
limits' decisions live in :mod:`supervisor.front.limits`; this module only
carries them out.

Behind trusted proxies (``[server] trusted_proxies``) the client's address
is the one the proxy gives, in a PROXY header (stripped by
:class:`~supervisor.front.connection.ProxiedConnection`) or in the
configured forwarding header (:class:`~supervisor.front.proxy.TrustedProxies`);
it is what the handshake limiter counts, what the refusal's log line names
and what the state dump shows (:meth:`WebSocketFront.clients`).
"""

from __future__ import annotations

import asyncio
import functools
import http
import logging
import math
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import InvalidHandshake
from websockets.frames import CloseCode
from websockets.http11 import Request, Response
from websockets.typing import Origin

from actors.clock import Clock, SystemClock
from actors.context import UserExecutionContext
from actors.errors import InvalidIdError
from actors.ports import Handle
from actors.tree import SupervisionTree
from supervisor.config.schema import Config
from supervisor.errors import AuthError
from supervisor.front.auth import Authenticator
from supervisor.front.bridge import WebSocketPort, admit, serve_connection
from supervisor.front.closing import DeferredCloses
from supervisor.front.connection import AcyclicConnection, proxied_connection
from supervisor.front.keepalive import Keepalive
from supervisor.front.limits import AddressLimiter, ConcurrencyGate, InboundRateLimit
from supervisor.front.proxy import TrustedProxies

__all__ = ["WebSocketFront"]

log = logging.getLogger(__name__)

_REFUSALS = {
    "rejected_quota": http.HTTPStatus.TOO_MANY_REQUESTS,
    "rejected_node": http.HTTPStatus.SERVICE_UNAVAILABLE,
    "rejected_unavailable": http.HTTPStatus.SERVICE_UNAVAILABLE,
}


class WebSocketFront:
    """The public listener of the daemon (``[server]``)."""

    def __init__(
        self,
        config: Config,
        tree: SupervisionTree,
        auth: Authenticator,
        clock: Clock | None = None,
    ) -> None:
        self.config = config
        self.tree = tree
        self.auth = auth
        self.clock: Clock = clock if clock is not None else SystemClock()
        limits = config.limits
        self.handshake_rate = AddressLimiter(
            limits.handshakes_per_second_per_address,
            limits.handshake_burst_per_address,
            clock=self.clock,
        )
        self.handshakes = ConcurrencyGate(limits.max_concurrent_handshakes)
        server = config.server
        self.proxies = TrustedProxies.from_text(
            server.trusted_proxies,
            proxy_protocol=server.proxy_protocol,
            header=server.forwarded_header,
        )
        self._admitted: dict[ServerConnection, tuple[Handle, WebSocketPort]] = {}
        self._addresses: dict[ServerConnection, tuple[str, str]] = {}  # admitted: (client, peer)
        self.server: Server | None = None
        self._closes: DeferredCloses | None = None

    async def start(self) -> None:
        """Bind the listener."""
        self._closes = DeferredCloses(asyncio.get_running_loop())
        server = self.config.server
        origins = server.allowed_origins
        self.server = await serve(
            self._handler,
            server.host,
            server.port,
            process_request=self._process_request,
            origins=None if origins is None else [Origin(o) for o in origins],
            open_timeout=self.config.limits.open_timeout,
            ping_interval=None,  # the bridge's keepalive frees a dead peer's slot at once
            max_size=server.max_message_size,
            compression="deflate" if server.compression == "deflate" else None,
            logger=logging.getLogger("supervisor.front.server.websockets"),
            create_connection=proxied_connection(self.proxies)
            if self.proxies
            else AcyclicConnection,
        )

    @property
    def port(self) -> int:
        """The bound port (useful with port 0)."""
        assert self.server is not None
        port: int = self.server.sockets[0].getsockname()[1]
        return port

    @property
    def connections(self) -> int:
        """Open WebSocket connections."""
        return 0 if self.server is None else len(self.server.connections)

    def clients(self) -> dict[str, dict[str, str]]:
        """Loop: each admitted connection's client address, by websocket id.

        ``{"client": host}``, with ``"proxy": host`` when a trusted proxy
        gave the client's address (the socket's peer is then the proxy).
        """
        found = {}
        for connection, (client, peer) in self._addresses.items():
            admitted = self._admitted.get(connection)
            if admitted is not None:
                entry = {"client": client} if client == peer else {"client": client, "proxy": peer}
                found[admitted[0].websocket_id] = entry
        return found

    def stop_accepting(self) -> None:
        """Stop listening; open connections stay until the tree closes them."""
        if self.server is not None:
            self.server.close(close_connections=False)

    async def wait_closed(self, timeout: float) -> bool:
        """Wait for every connection to end; False if some were still open at ``timeout``."""
        if self.server is None:
            return True
        try:
            await asyncio.wait_for(self.server.wait_closed(), timeout)
        except TimeoutError:
            return False
        return True

    def abort(self) -> None:
        """Drop every connection at once (a forced exit)."""
        if self.server is not None:
            for connection in list(self.server.connections):
                connection.transport.abort()

    # --- handshake -----------------------------------------------------------------

    async def _process_request(
        self, connection: ServerConnection, request: Request
    ) -> Response | None:
        peer = _remote_host(connection)  # the PROXY header's source, if any
        address = self._client(peer, request)
        if not self.handshake_rate.allow(address):
            wait = self.handshake_rate.retry_after(address)
            socket_peer = _host(getattr(connection, "peer_address", None)) or peer
            via = "" if socket_peer == address else f" (via proxy {socket_peer})"
            log.info("handshake refused: too many from %s%s", address, via)
            too_many = http.HTTPStatus.TOO_MANY_REQUESTS
            response = _respond(connection, too_many, "too many handshakes from this address")
            response.headers["Retry-After"] = str(max(1, math.ceil(wait)))
            return response
        url = urlsplit(request.path)
        if url.path != self.config.server.path:
            return _respond(connection, http.HTTPStatus.NOT_FOUND, "not found")
        if not is_upgrade(request):
            return None  # websockets refuses it (400, 426) with the precise reason; no admission
        try:
            # websockets checks the Origin only after this hook: check it here, before any slot
            connection.protocol.process_origin(request.headers)
        except InvalidHandshake:
            return _respond(connection, http.HTTPStatus.FORBIDDEN, "origin not allowed")
        if not self.handshakes.try_enter():
            return _respond(
                connection, http.HTTPStatus.SERVICE_UNAVAILABLE, "too many handshakes in progress"
            )
        try:
            answer = await self._authenticate_and_admit(connection, request, url.query)
        finally:
            self.handshakes.leave()
        if answer is None and connection in self._admitted:
            socket_peer = _host(getattr(connection, "peer_address", None)) or peer
            self._addresses[connection] = (address, socket_peer)
        return answer

    def _client(self, peer: str, request: Request) -> str:
        """The client's address: ``peer``, or what a trusted proxy's header says."""
        header = self.proxies.header
        if header == "none":
            return peer
        return self.proxies.client(peer, request.headers.get_all(header))

    async def _authenticate_and_admit(
        self, connection: ServerConnection, request: Request, raw_query: str
    ) -> Response | None:
        query = dict(parse_qsl(raw_query))
        try:
            user_id = self.auth.authenticate(request.headers, query)
            context = UserExecutionContext.from_websocket_request(user_id, query.get("thread_id"))
        except AuthError as error:
            return _respond(connection, http.HTTPStatus.UNAUTHORIZED, error.reason)
        except InvalidIdError as error:
            return _respond(connection, http.HTTPStatus.BAD_REQUEST, str(error))
        port = WebSocketPort(
            asyncio.get_running_loop(), connection, self.config.limits.max_outbound_queue
        )
        admission = await admit(self.tree, context, port, self.config.server.admission_timeout)
        if admission.handle is None:
            return _refuse(connection, admission.result, admission.reason, admission.retry_after)
        handle = admission.handle
        self._admitted[connection] = (handle, port)
        # freed as the peer goes, before its handler (if it ever gets one) wakes up
        assert isinstance(connection, AcyclicConnection)  # the server's create_connection
        connection.call_when_lost(lambda abrupt: self._lost(connection, abrupt))
        return None

    def _lost(self, connection: ServerConnection, abrupt: bool) -> None:
        self._addresses.pop(connection, None)
        admitted = self._admitted.pop(connection, None)
        if admitted is None:  # its handler has ended: nothing to close but the socket
            if abrupt:
                connection.transport.close()  # left open by eof_received for this front
            return
        handle = admitted[0]
        if abrupt:  # one of a batch of losses, maybe thousands: free the slot, close after them
            handle.peer_gone()
            assert self._closes is not None  # set by start(), before any connection
            self._closes.add(functools.partial(_close_dropped, connection, handle))
        else:
            handle.closed(connection.close_code)

    async def _handler(self, connection: ServerConnection) -> None:
        admitted = self._admitted.get(connection)
        if admitted is None:  # pragma: no cover - the handshake always admits first
            return
        try:
            timeouts = self.config.timeouts
            alive = Keepalive(timeouts.ping_interval, timeouts.ping_timeout)
            limits = self.config.limits
            inbound = InboundRateLimit(
                limits.messages_per_second, limits.message_burst, clock=self.clock
            )
            await serve_connection(connection, *admitted, alive, inbound)
        finally:
            self._admitted.pop(connection, None)
            self._addresses.pop(connection, None)


def _close_dropped(connection: ServerConnection, handle: Handle) -> None:
    """The rest of a dropped peer's close: its manager retired, then its socket closed."""
    try:
        handle.closed(CloseCode.ABNORMAL_CLOSURE)  # no close frame came
    finally:
        connection.transport.close()  # left open by eof_received for this; a no-op after a reset


def _remote_host(connection: ServerConnection) -> str:
    """The host of the connection's ``remote_address``."""
    try:
        return _host(connection.remote_address)
    except (AttributeError, OSError):  # pragma: no cover - a transport already gone
        return ""


def _host(address: Any) -> str:
    """The host of a socket address (without the port); "" for none."""
    if isinstance(address, tuple | list) and address:
        return str(address[0])
    return str(address or "")


def is_upgrade(request: Request) -> bool:
    """True if ``request`` asks for a WebSocket upgrade (checked again, fully, by websockets).

    Checked before authentication and admission, so that a request that can
    never be upgraded never takes a slot or supersedes a live connection.
    """
    headers = request.headers
    connection = ",".join(headers.get_all("Connection")).lower()
    upgrade = ",".join(headers.get_all("Upgrade")).strip().lower()
    return (
        "upgrade" in (token.strip() for token in connection.split(","))
        and upgrade == "websocket"
        and len(headers.get_all("Sec-WebSocket-Key")) == 1
        and headers.get("Sec-WebSocket-Version") == "13"
    )


def _respond(connection: ServerConnection, status: http.HTTPStatus, text: str) -> Response:
    response = connection.respond(status, text + "\n")
    return response


def _refuse(
    connection: ServerConnection, result: str, reason: str, retry_after: float | None
) -> Response:
    status = _REFUSALS.get(result, http.HTTPStatus.SERVICE_UNAVAILABLE)
    response = _respond(connection, status, reason or result)
    if retry_after is not None:
        response.headers["Retry-After"] = str(max(1, math.ceil(retry_after)))
    return response
