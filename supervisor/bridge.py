"""The one bridge between the event loop and the actors.

Actor threads reach the loop only through :class:`WebSocketPort` (with
``call_soon_threadsafe``); the loop reaches the actors only with ``tell`` and
waits for their answers on asyncio futures completed from the actor side, so
the loop never blocks on an actor.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import attrs
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from actors.ports import Admission, ConnectionHandle
from supervisor.codes import CloseCode
from supervisor.context import UserExecutionContext
from supervisor.tree import SupervisionTree

__all__ = [
    "Keepalive",
    "WebSocketPort",
    "admit",
    "keepalive",
    "off_loop",
    "reply_future",
    "serve_connection",
    "welcome_frame",
]


T = TypeVar("T")


def reply_future(loop: asyncio.AbstractEventLoop) -> tuple[asyncio.Future[T], Callable[[T], None]]:
    """A future on ``loop``, and the callback that completes it from any thread."""
    future: asyncio.Future[T] = loop.create_future()

    def settle(value: T) -> None:  # on the loop
        if not future.done():
            future.set_result(value)

    def reply(value: T) -> None:  # on an actor thread
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
            loop.call_soon_threadsafe(settle, value)

    return future, reply


async def off_loop(function: Callable[[], T]) -> T:
    """Run a blocking call on a fresh daemon thread and await its result.

    A daemon thread, not the default executor: a forced exit never waits for it.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(result: T | None, error: BaseException | None) -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)  # type: ignore[arg-type]

    def run() -> None:
        try:
            result = function()
        except BaseException as error:
            loop.call_soon_threadsafe(settle, None, error)
        else:
            loop.call_soon_threadsafe(settle, result, None)

    threading.Thread(target=run, name="ws-supervisor-offloop", daemon=True).start()
    return await future


class WebSocketPort:
    """A websockets connection as a :class:`~actors.ports.Port`.

    ``send_text`` and ``close`` run on actor threads: they queue and wake the
    loop once per batch (not once per frame). :meth:`run` is the connection's
    writer task on the loop; frames go out in order, then the close.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, connection: ServerConnection) -> None:
        self._loop = loop
        self._connection = connection
        self._lock = threading.Lock()
        self._pending: collections.deque[str] = collections.deque()
        self._close: tuple[int, str] | None = None
        self._scheduled = False
        self._wakeup = asyncio.Event()

    def send_text(self, text: str) -> None:
        """Any thread: queue one frame."""
        with self._lock:
            self._pending.append(text)
            wake = not self._scheduled
            self._scheduled = True
        if wake:
            self._call_soon(self._wakeup.set)

    def close(self, code: int, reason: str) -> None:
        """Any thread: close after the frames already queued."""
        with self._lock:
            if self._close is None:
                self._close = (code, reason[:120])
        self._call_soon(self._wakeup.set)

    def _call_soon(self, callback: Any) -> None:
        with contextlib.suppress(RuntimeError):  # a closed loop: the process is ending
            self._loop.call_soon_threadsafe(callback)

    def _take(self) -> tuple[list[str], tuple[int, str] | None]:
        with self._lock:
            batch = list(self._pending)
            self._pending.clear()
            self._scheduled = False
            return batch, self._close

    async def run(self) -> None:
        """Loop: the writer task; ends when the connection closes."""
        try:
            while True:
                await self._wakeup.wait()
                self._wakeup.clear()
                batch, close = self._take()
                for text in batch:
                    await self._connection.send(text)
                if close is not None:
                    await self._connection.close(*close)
                    return
        except ConnectionClosed:
            return


def welcome_frame(context: UserExecutionContext) -> str:
    """The first frame a client receives: who it is, under which ids."""
    return json.dumps(
        {
            "type": "welcome",
            "user_id": context.user_id,
            "thread_id": context.thread_id,
            "run_id": context.run_id,
            "request_id": context.request_id,
            "websocket_id": context.websocket_id,
        }
    )


async def admit(
    tree: SupervisionTree, context: UserExecutionContext, port: WebSocketPort, timeout: float
) -> Admission:
    """Loop: ask the tree for a slot without blocking the loop."""
    answer: asyncio.Future[Admission]
    answer, hand_over = reply_future(asyncio.get_running_loop())
    ticket = tree.admit_nowait(context, port, hand_over)
    try:
        return await asyncio.wait_for(asyncio.shield(answer), timeout)
    except TimeoutError:
        if ticket.withdraw():
            return Admission("rejected_unavailable", reason="no answer in time")
        return await answer


@attrs.frozen
class Keepalive:
    """Ping every ``interval`` seconds; a pong later than ``timeout`` means a dead peer."""

    interval: float
    timeout: float


async def keepalive(
    connection: ServerConnection, handle: ConnectionHandle, settings: Keepalive
) -> None:
    """Loop: ping, record each pong as a heartbeat; on a missed pong free the slot at once.

    websockets' own keepalive would then wait its close timeout for a peer
    that will never answer; a dead peer gets no closing handshake here: its
    slot is freed and its TCP connection aborted, within interval + timeout.
    """
    try:
        while True:
            await asyncio.sleep(settings.interval)
            pong = await connection.ping()
            try:
                await asyncio.wait_for(pong, settings.timeout)
            except TimeoutError:
                handle.closed(int(CloseCode.INTERNAL_ERROR))
                connection.transport.abort()
                return
            handle.heartbeat()
    except ConnectionClosed:
        return


_BINARY_ERROR = json.dumps(
    {
        "type": "error",
        "code": "binary_not_supported",
        "message": "frames are JSON text; binary frames are not accepted",
    }
)


async def serve_connection(
    connection: ServerConnection,
    handle: ConnectionHandle,
    port: WebSocketPort,
    alive: Keepalive | None = None,
) -> None:
    """Loop: greet, carry frames to the manager until the connection ends, free the slot.

    ``ConnectionClosed`` never escapes (a traceback per dropped connection
    would slow a disconnect storm); the slot is freed however it ends.
    """
    writer: asyncio.Task[None] | None = None
    pinger = None if alive is None else asyncio.create_task(keepalive(connection, handle, alive))
    try:
        await connection.send(welcome_frame(handle.context))
        writer = asyncio.create_task(port.run())  # after the welcome: nothing overtakes it
        async for message in connection:
            if isinstance(message, str):
                handle.deliver(message)
            else:
                port.send_text(_BINARY_ERROR)
    except ConnectionClosed:
        pass
    finally:
        handle.closed(connection.close_code)
        if pinger is not None:
            pinger.cancel()
        if writer is not None:
            port.close(int(CloseCode.NORMAL), "")
            await writer
