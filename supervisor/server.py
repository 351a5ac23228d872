"""The WebSocket front: identify, admit before the upgrade, then carry frames.

Runs entirely on the event loop. The handshake is answered 404 (wrong path),
401 (authentication), 400 (a bad thread id), 429 with ``Retry-After`` (quota
full) or 503 (the node at emergency, or no answer in time) before any
upgrade, so a refused client never holds a slot.
"""

from __future__ import annotations

import asyncio
import http
import logging
from urllib.parse import parse_qsl, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request, Response

from actors.ports import ConnectionHandle
from supervisor.auth import Authenticator
from supervisor.bridge import Keepalive, WebSocketPort, admit, serve_connection
from supervisor.config import Config
from supervisor.context import UserExecutionContext
from supervisor.errors import AuthError, InvalidIdError
from supervisor.tree import SupervisionTree

__all__ = ["WebSocketFront"]

log = logging.getLogger(__name__)

_REFUSALS = {
    "rejected_quota": http.HTTPStatus.TOO_MANY_REQUESTS,
    "rejected_node": http.HTTPStatus.SERVICE_UNAVAILABLE,
    "rejected_unavailable": http.HTTPStatus.SERVICE_UNAVAILABLE,
}


class WebSocketFront:
    """The public listener of the daemon (``[server]``)."""

    def __init__(self, config: Config, tree: SupervisionTree, auth: Authenticator) -> None:
        self.config = config
        self.tree = tree
        self.auth = auth
        self._admitted: dict[ServerConnection, tuple[ConnectionHandle, WebSocketPort]] = {}
        self.server: Server | None = None

    async def start(self) -> None:
        """Bind the listener."""
        server = self.config.server
        self.server = await serve(
            self._handler,
            server.host,
            server.port,
            process_request=self._process_request,
            ping_interval=None,  # the bridge's keepalive frees a dead peer's slot at once
            max_size=server.max_message_size,
            compression="deflate" if server.compression == "deflate" else None,
            logger=logging.getLogger("supervisor.server.websockets"),
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
        url = urlsplit(request.path)
        if url.path != self.config.server.path:
            return _respond(connection, http.HTTPStatus.NOT_FOUND, "not found")
        query = dict(parse_qsl(url.query))
        try:
            user_id = self.auth.authenticate(request.headers, query)
            context = UserExecutionContext.from_websocket_request(user_id, query.get("thread_id"))
        except AuthError as error:
            return _respond(connection, http.HTTPStatus.UNAUTHORIZED, error.reason)
        except InvalidIdError as error:
            return _respond(connection, http.HTTPStatus.BAD_REQUEST, str(error))
        port = WebSocketPort(asyncio.get_running_loop(), connection)
        admission = await admit(self.tree, context, port, self.config.server.admission_timeout)
        if admission.handle is None:
            return _refuse(connection, admission.result, admission.reason, admission.retry_after)
        handle = admission.handle
        self._admitted[connection] = (handle, port)
        # a handshake that fails from here on never reaches the handler: free the slot anyway
        connection.connection_lost_waiter.add_done_callback(lambda _: self._lost(connection))
        return None

    def _lost(self, connection: ServerConnection) -> None:
        admitted = self._admitted.pop(connection, None)
        if admitted is not None:
            admitted[0].closed(connection.close_code)

    async def _handler(self, connection: ServerConnection) -> None:
        admitted = self._admitted.get(connection)
        if admitted is None:  # pragma: no cover - the handshake always admits first
            return
        try:
            timeouts = self.config.timeouts
            alive = Keepalive(timeouts.ping_interval, timeouts.ping_timeout)
            await serve_connection(connection, *admitted, alive)
        finally:
            self._admitted.pop(connection, None)


def _respond(connection: ServerConnection, status: http.HTTPStatus, text: str) -> Response:
    response = connection.respond(status, text + "\n")
    return response


def _refuse(
    connection: ServerConnection, result: str, reason: str, retry_after: float | None
) -> Response:
    status = _REFUSALS.get(result, http.HTTPStatus.SERVICE_UNAVAILABLE)
    response = _respond(connection, status, reason or result)
    if retry_after is not None:
        response.headers["Retry-After"] = str(max(1, round(retry_after)))
    return response
