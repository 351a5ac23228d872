"""Embedding: put a connection of your own websockets server under supervision.

Two ways, both on the event loop, both with the same quota, cleanup and
metrics as the daemon::

    async def handler(connection):                      # the whole handler
        await serve_supervised(tree, connection, user_id="alice")

    async def handler(connection):                      # your own receive loop
        async with supervise(tree, connection, "alice") as handle:
            async for message in connection:
                handle.deliver(message)

Pass ``ping_interval=None`` to your ``serve()``: ``serve_supervised`` runs the
keepalive that frees a dead peer's slot within ping interval + timeout. Pass
``create_connection=AcyclicConnection`` (:mod:`supervisor.front.server`) as well,
so that a closed connection leaves no garbage for the cyclic collector.
A refused connection is closed with 1013 (the upgrade has already happened)
and :class:`~actors.errors.AdmissionRefused` is raised by ``supervise``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from websockets.asyncio.server import ServerConnection

from actors.codes import ServerCloseCode
from actors.context import UserExecutionContext
from actors.errors import AdmissionRefused
from actors.ports import Handle
from actors.tree import SupervisionTree
from supervisor.front.bridge import WebSocketPort
from supervisor.front.keepalive import Keepalive
from supervisor.front.session import admit, serve_connection

__all__ = ["serve_supervised", "supervise"]


async def _admit(
    tree: SupervisionTree,
    connection: ServerConnection,
    user_id: str,
    thread_id: str | None,
    timeout: float,
) -> tuple[Handle, WebSocketPort]:
    context = UserExecutionContext.from_websocket_request(user_id, thread_id)
    port = WebSocketPort(asyncio.get_running_loop(), connection)
    admission = await admit(tree, context, port, timeout)
    if admission.handle is None:
        reason = admission.reason or admission.result
        await connection.close(int(ServerCloseCode.TRY_AGAIN_LATER), reason)
        raise AdmissionRefused(reason, admission.retry_after)
    return admission.handle, port


@contextlib.asynccontextmanager
async def supervise(
    tree: SupervisionTree,
    connection: ServerConnection,
    user_id: str,
    thread_id: str | None = None,
    *,
    timeout: float = 5.0,
) -> AsyncIterator[Handle]:
    """Hold a slot for ``connection`` while the block runs; frames in via ``deliver``."""
    handle, port = await _admit(tree, connection, user_id, thread_id, timeout)
    port.start()
    try:
        yield handle
    finally:
        handle.closed(connection.close_code)
        port.close(int(ServerCloseCode.NORMAL), "")
        await port.wait_done()


async def serve_supervised(
    tree: SupervisionTree,
    connection: ServerConnection,
    user_id: str,
    thread_id: str | None = None,
    *,
    timeout: float = 5.0,
) -> None:
    """The whole connection handler: admit, welcome, frames through the tree's app, free.

    A refused connection is closed with 1013 and the call returns.
    """
    try:
        handle, port = await _admit(tree, connection, user_id, thread_id, timeout)
    except AdmissionRefused:
        return
    timeouts = tree.settings.timeouts
    await serve_connection(
        connection, handle, port, Keepalive(timeouts.ping_interval, timeouts.ping_timeout)
    )
