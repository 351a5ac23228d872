"""The WebSocket front: identify, admit before the upgrade, then carry frames.

Runs entirely on the event loop. The handshake is answered, in this order,
429 with ``Retry-After`` (too many handshakes from the client's address),
404 (wrong path), 403 (an Origin not in ``[server] origins``), 503 (too many
handshakes in progress), 401 (authentication), 400 (a bad thread id), 429
with ``Retry-After`` (quota full) or 503 (the node at emergency, or no answer
in time) before any upgrade, so a refused client never holds a slot. The
limits' decisions live in :mod:`supervisor.front.limits`; this module only
carries them out.

Under ``serve --workers N`` the master accepts, answers the address rate,
the path, the Origin and authentication, and hands each connection over
with the user id it established (:meth:`WebSocketFront.adopt`); the front
of a worker then skips those two checks for it and goes on as above.
Behind trusted proxies (``[server] trusted_proxies``) the client's address
is the one the proxy gives, in a PROXY header (stripped by
:class:`~supervisor.front.connection.ProxiedConnection`) or in the
configured forwarding header (:class:`~supervisor.front.proxy.TrustedProxies`);
it is what the handshake limiter counts, what the access lines name (with
the proxy) and what the state dump shows (:meth:`WebSocketFront.clients`).

What the front sees that the tree does not (every handshake's answer, the
front's own refusals, every admitted connection's close code) goes to its
:class:`FrontObserver`, on the event loop.
"""

from __future__ import annotations

import asyncio
import functools
import http
import logging
import math
import socket
from typing import Protocol
from urllib.parse import parse_qsl, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import InvalidHandshake
from websockets.extensions.permessage_deflate import ServerPerMessageDeflateFactory
from websockets.frames import CloseCode
from websockets.http11 import Request, Response
from websockets.typing import Origin

from actors.clock import Clock, SystemClock
from actors.context import UserExecutionContext
from actors.errors import InvalidIdError
from actors.handle import ConnectionHandle
from actors.ports import Handle
from actors.tree import SupervisionTree
from supervisor.config.schema import Config
from supervisor.errors import AuthError
from supervisor.front import access
from supervisor.front.auth import Authenticator
from supervisor.front.bridge import WebSocketPort
from supervisor.front.budget import (
    ASSEMBLER_HIGH,
    ASSEMBLER_LOW,
    DEFLATE_WINDOW_BITS,
    WRITE_HIGH,
    ConnectionBudget,
)
from supervisor.front.closing import DeferredCloses
from supervisor.front.connection import AcyclicConnection, adopt, proxied_connection
from supervisor.front.keepalive import Keepalive
from supervisor.front.limits import AddressLimiter, ConcurrencyGate, InboundRateLimit
from supervisor.front.proxy import TrustedProxies
from supervisor.front.session import admit, serve_connection

__all__ = ["FrontObserver", "NullFrontObserver", "WebSocketFront"]

log = logging.getLogger(__name__)


class FrontObserver(Protocol):
    """What the front reports as it works; every method runs on the event loop, and is fast."""

    def handshake(self, status: int | None, dropped: bool) -> None:
        """An opening handshake whose request was read ended: the HTTP status answered
        (101 for an upgrade), or ``dropped`` (cancelled at ``open_timeout``, no answer)."""

    def refused(self, result: str, reason: str) -> None:
        """The front refused an admission: the tree's ``(result, reason)`` as it answered,
        the front's own ``rejected_unavailable`` (no answer in time) or ``rejected_busy``
        (``max_concurrent_handshakes``)."""

    def closed(self, code: int | None) -> None:
        """An admitted connection ended: the close code received (None: no close handshake)."""


class NullFrontObserver:
    """A front observer that ignores everything."""

    def handshake(self, status: int | None, dropped: bool) -> None:
        pass

    def refused(self, result: str, reason: str) -> None:
        pass

    def closed(self, code: int | None) -> None:
        pass


class WebSocketFront:
    """The public listener of the daemon (``[server]``)."""

    def __init__(
        self,
        config: Config,
        tree: SupervisionTree,
        auth: Authenticator,
        clock: Clock | None = None,
        observer: FrontObserver | None = None,
    ) -> None:
        self.config = config
        self.tree = tree
        self.auth = auth
        self.clock: Clock = clock if clock is not None else SystemClock()
        self.observer: FrontObserver = observer if observer is not None else NullFrontObserver()
        limits = config.limits
        self.handshake_rate = AddressLimiter(
            limits.handshakes_per_second_per_address,
            limits.handshake_burst_per_address,
            clock=self.clock,
        )
        self.handshakes = ConcurrencyGate(limits.max_concurrent_handshakes)
        self.budget = ConnectionBudget.from_config(config)
        server = config.server
        self.proxies = TrustedProxies.from_text(
            server.trusted_proxies,
            proxy_protocol=server.proxy_protocol,
            header=server.forwarded_header,
        )
        self._admitted: dict[ServerConnection, tuple[Handle, WebSocketPort]] = {}
        self._addresses: dict[ServerConnection, access.Seen] = {}  # the admitted ones
        self.server: Server | None = None
        self._closes: DeferredCloses | None = None

    async def start(self, listening: socket.socket | None = None) -> None:
        """Bind the listener; or serve ``listening``, a socket already bound (a worker's)."""
        self._closes = DeferredCloses(asyncio.get_running_loop())
        server = self.config.server
        origins = server.allowed_origins
        self.server = await serve(
            self._handler,
            None if listening is not None else server.host,
            None if listening is not None else server.port,
            sock=listening,
            process_request=self._process_request,
            origins=None if origins is None else [Origin(o) for o in origins],
            open_timeout=self.config.limits.open_timeout,
            ping_interval=None,  # the bridge's keepalive frees a dead peer's slot at once
            max_size=server.max_message_size,
            # the budget's bounds (supervisor/front/budget.py), spelled out
            max_queue=(ASSEMBLER_HIGH, ASSEMBLER_LOW),
            write_limit=WRITE_HIGH,
            compression=None,
            extensions=_deflate() if server.compression == "deflate" else None,
            logger=access.websockets_logger(log.isEnabledFor(logging.DEBUG)),
            create_connection=(
                proxied_connection(self.proxies) if self.proxies else AcyclicConnection
            ).bounded(self.budget),
        )

    @property
    def port(self) -> int:
        """The bound port (useful with port 0); 0 when serving a worker's Unix socket."""
        assert self.server is not None
        name = self.server.sockets[0].getsockname()
        return int(name[1]) if isinstance(name, tuple) else 0

    def adopt(self, sock: socket.socket, prefix: bytes, user_id: str) -> None:
        """Loop: serve a connection handed over by the master (``serve --workers``).

        ``prefix`` is what the master read of it (the request head),
        ``user_id`` the user it authenticated ("" for a request that is no
        upgrade, which websockets refuses with the precise reason).
        """
        assert self.server is not None  # started
        adopt(self.server, sock, prefix, user_id)

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
                proxy = access.proxy_of(client, peer)
                entry = {"client": client} if proxy is None else {"client": client, "proxy": proxy}
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
        assert isinstance(connection, AcyclicConnection)  # the server's create_connection
        connection.call_when_answered(self.observer.handshake)
        handed = connection.handed_user  # the master checked the address rate and the user
        peer = access.remote_host(connection)  # the PROXY header's source, if any
        address = self._client(peer, request)
        seen = (address, access.host_of(getattr(connection, "peer_address", None)) or peer)
        if handed is None and not self.handshake_rate.allow(address):
            wait = self.handshake_rate.retry_after(address)
            too_many = http.HTTPStatus.TOO_MANY_REQUESTS
            text = "too many handshakes from this address"
            response = access.respond(connection, seen, too_many, text, flood=True)
            response.headers["Retry-After"] = str(max(1, math.ceil(wait)))
            return response
        url = urlsplit(request.path)
        if url.path != self.config.server.path:
            return access.respond(connection, seen, http.HTTPStatus.NOT_FOUND, "not found")
        if not is_upgrade(request):
            return None  # websockets refuses it (400, 426) with the precise reason; no admission
        try:
            # websockets checks the Origin only after this hook: check it here, before any slot
            connection.protocol.process_origin(request.headers)
        except InvalidHandshake:
            return access.respond(connection, seen, http.HTTPStatus.FORBIDDEN, "origin not allowed")
        if not self.handshakes.try_enter():
            self.observer.refused("rejected_busy", "handshakes_in_progress")
            busy = http.HTTPStatus.SERVICE_UNAVAILABLE
            return access.respond(connection, seen, busy, "too many handshakes in progress")
        try:
            return await self._authenticate_and_admit(connection, seen, request, url.query, handed)
        finally:
            self.handshakes.leave()

    def _client(self, peer: str, request: Request) -> str:
        """The client's address: ``peer``, or what a trusted proxy's header says."""
        header = self.proxies.header
        if header == "none":
            return peer
        return self.proxies.client(peer, request.headers.get_all(header))

    async def _authenticate_and_admit(
        self,
        connection: AcyclicConnection,
        seen: access.Seen,
        request: Request,
        raw_query: str,
        handed: str | None,
    ) -> Response | None:
        query = dict(parse_qsl(raw_query))
        try:
            user_id = handed or self.auth.authenticate(request.headers, query)
            context = UserExecutionContext.from_websocket_request(user_id, query.get("thread_id"))
        except AuthError as error:
            return access.respond(connection, seen, http.HTTPStatus.UNAUTHORIZED, error.reason)
        except InvalidIdError as error:
            return access.respond(connection, seen, http.HTTPStatus.BAD_REQUEST, str(error))
        port = WebSocketPort(asyncio.get_running_loop(), connection, self.budget)
        admission = await admit(self.tree, context, port, self.config.server.admission_timeout)
        if admission.handle is None:
            self.observer.refused(admission.result, admission.reason)
            return access.refuse(connection, seen, admission, context)
        handle = admission.handle
        if self.config.faults.close_under_foreign_id and isinstance(handle, ConnectionHandle):
            handle = handle.misreporting(UserExecutionContext.from_websocket_request(user_id))
        self._admitted[connection] = (handle, port)
        self._addresses[connection] = seen
        # freed as the peer goes, before its handler (if it ever gets one) wakes up
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
        else:  # its close frame came: its code, before the connection is closed
            received = connection.protocol.close_rcvd
            handle.closed(connection.close_code if received is None else received.code)

    async def _handler(self, connection: ServerConnection) -> None:
        admitted = self._admitted.get(connection)
        if admitted is None:  # pragma: no cover - the handshake always admits first
            return
        client, peer = self._addresses.get(connection, ("", ""))
        try:
            timeouts = self.config.timeouts
            alive = Keepalive(timeouts.ping_interval, timeouts.ping_timeout)
            limits = self.config.limits
            inbound = InboundRateLimit(
                limits.messages_per_second, limits.message_burst, clock=self.clock
            )
            assert isinstance(connection, AcyclicConnection)  # the server's create_connection
            connection.guard(inbound, admitted[1].shed)  # pings and pongs pay the rate too
            await serve_connection(connection, *admitted, alive, inbound)
        finally:
            self._admitted.pop(connection, None)
            self._addresses.pop(connection, None)
            handle, port = admitted
            own = _own_code(connection, handle, port)  # though the peer never answered it
            self.observer.closed(connection.close_code if own is None else own)
            access.connection_ended(
                connection,
                handle,
                address=client,
                proxy=access.proxy_of(client, peer),
                shed_code=own,
                now=self.tree.clock.wall(),
            )


def _deflate() -> list[ServerPerMessageDeflateFactory]:
    """permessage-deflate with windows of 2^12 both ways, for clients that agree to it.

    websockets' default inflates with the client's window, 2^15 when it
    names none; a client that does not offer ``client_max_window_bits``
    (browsers and websockets do) gets no compression instead.
    """
    return [
        ServerPerMessageDeflateFactory(
            server_max_window_bits=DEFLATE_WINDOW_BITS,
            client_max_window_bits=DEFLATE_WINDOW_BITS,
            compress_settings={"memLevel": 5},
            require_client_max_window_bits=True,
        )
    ]


def _own_code(connection: ServerConnection, handle: Handle, port: WebSocketPort) -> int | None:
    """The code the server ended the connection with itself, or None.

    A shed's (4004, 1008); or, on a connection aborted without a close
    handshake (1006), the code the front reported before it aborted it: the
    keepalive's reap (4003).
    """
    if port.shed_code is not None:
        return port.shed_code
    reported = handle.stats.closed_with
    aborted = connection.close_code == CloseCode.ABNORMAL_CLOSURE
    return reported if aborted and reported not in (None, CloseCode.ABNORMAL_CLOSURE) else None


def _close_dropped(connection: ServerConnection, handle: Handle) -> None:
    """The rest of a dropped peer's close: its manager retired, then its socket closed."""
    try:
        handle.closed(CloseCode.ABNORMAL_CLOSURE)  # no close frame came
    finally:
        connection.transport.close()  # left open by eof_received for this; a no-op after a reset


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
        and headers.get_all("Sec-WebSocket-Version") == ["13"]
    )
