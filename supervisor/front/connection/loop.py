"""The loop side: the running loop, a ping that does not wait, a connection adopted."""

from __future__ import annotations

import asyncio
import random
import socket
import struct
from collections.abc import Callable

from websockets.asyncio.server import Server, ServerConnection
from websockets.protocol import OPEN

from supervisor.front.connection.acyclic import AcyclicConnection

__all__ = ["adopt", "ping_nowait", "running_loop"]

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
    connection.hand_over(prefix, handed_user)
    sock.setblocking(False)
    loop = listening.get_loop()
    owner = listening if listening.is_serving() else None  # a closed server takes no more
    loop._make_socket_transport(sock, connection, server=owner)  # type: ignore[attr-defined]
