"""The one bridge between the event loop and the actors.

Actor threads reach the loop only through :class:`WebSocketPort` (with
``call_soon_threadsafe``); the loop reaches the actors only with ``tell`` (or
:func:`~actors._runtime.mailbox.tell_here`, which gives an idle actor whose work never
waits its turn right here) and waits for their answers on asyncio futures
completed from the actor side, so the loop never blocks on an actor.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from websockets.asyncio.server import ServerConnection, broadcast
from websockets.exceptions import ConnectionClosed
from websockets.protocol import State

from actors.codes import ServerCloseCode
from actors.context import UserExecutionContext
from actors.ports import Admission, Handle
from actors.tree import SupervisionTree
from supervisor.front.connection import running_loop
from supervisor.front.keepalive import Keepalive, KeepaliveScheduler, buffer_full
from supervisor.front.limits import InboundRateLimit

__all__ = [
    "DEFAULT_MAX_OUTBOUND_QUEUE",
    "SHED_GRACE",
    "WebSocketPort",
    "admit",
    "off_loop",
    "reply_future",
    "serve_connection",
    "welcome_frame",
]


T = TypeVar("T")


def _run_on_loop(
    loop: asyncio.AbstractEventLoop, callback: Callable[..., object], *args: Any
) -> None:
    """Run ``callback(*args)`` on ``loop``: at once if called there, else at its next turn.

    On the loop already (an actor's turn run there), no self-pipe write;
    from an actor thread, ``call_soon_threadsafe``. A closed loop (the
    process is ending, nobody waits any more) is ignored.
    """
    if running_loop() is loop:
        callback(*args)
        return
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(callback, *args)


def reply_future(
    loop: asyncio.AbstractEventLoop, undo: Callable[[T], None] | None = None
) -> tuple[asyncio.Future[T], Callable[[T], None]]:
    """A future on ``loop``, and the callback that completes it from any thread.

    A value that comes once the future is already done (cancelled, or
    given up on) goes to ``undo``, on the loop.
    """
    future: asyncio.Future[T] = loop.create_future()

    def settle(value: T) -> None:  # on the loop
        if not future.done():
            future.set_result(value)
        elif undo is not None:
            undo(value)

    def reply(value: T) -> None:  # in an actor's turn: on its thread, or on the loop
        _run_on_loop(loop, settle, value)

    return future, reply


async def off_loop(function: Callable[[], T]) -> T:
    """Run a blocking call on a fresh daemon thread and await its result.

    A daemon thread, not the default executor: a forced exit never waits for it.
    Returns once the thread has ended too (it only has to return by then), so
    a caller that stops the daemon leaves no thread of it behind.
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

    thread = threading.Thread(target=run, name="ws-supervisor-offloop", daemon=True)
    thread.start()
    try:
        return await future
    finally:
        while not future.cancelled() and thread.is_alive():  # settled: it is returning
            await asyncio.sleep(0.001)


DEFAULT_MAX_OUTBOUND_QUEUE = 1000
"""Frames a :class:`WebSocketPort` holds for its writer by default (as ``[limits]``)."""

SHED_GRACE = 1.0
"""Seconds a shed connection's close may take before its TCP connection is aborted."""


class WebSocketPort:
    """A websockets connection as a :class:`~actors.ports.Port`.

    ``send_text`` and ``close`` run on actor threads: they queue and wake the
    loop once per batch (not once per frame). On the loop (a handler that
    runs inline), a frame with nothing queued ahead of it is written at
    once. On the loop, a batch is written
    straight into the connection's transport (websockets' own
    :func:`~websockets.asyncio.server.broadcast`, no task, no await) while
    the transport's buffer is below its high-water mark; past it, a drain
    task takes over and awaits websockets' flow control until the queue is
    empty. Frames go out in order, then the close. Nothing is written before
    :meth:`start` (the welcome frame goes first).

    At most ``max_outbound_queue`` frames wait: beyond that the reader is
    too slow (or stalled), the waiting frames are dropped and the
    connection is shed with 4004 (:meth:`shed`).
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        connection: ServerConnection,
        max_outbound_queue: int = DEFAULT_MAX_OUTBOUND_QUEUE,
    ) -> None:
        if max_outbound_queue < 1:
            raise ValueError(f"max_outbound_queue must be >= 1, got {max_outbound_queue!r}")
        self._loop = loop
        self._connection = connection
        self.max_outbound_queue = max_outbound_queue
        self._lock = threading.Lock()
        self._pending: collections.deque[str] = collections.deque()
        self._close: tuple[int, str] | None = None
        self._shed: tuple[int, str] | None = None
        self._shed_task: asyncio.Task[None] | None = None
        self._scheduled = False
        self._started = False
        self._closing = False  # the close is under way (or was not needed)
        self._task: asyncio.Task[None] | None = None  # draining or closing, only while it does

    @property
    def shed_code(self) -> int | None:
        """The close code the connection was shed with (4004, 1008), or None."""
        return None if self._shed is None else self._shed[0]

    def send_text(self, text: str) -> None:
        """Any thread: queue one frame; past ``max_outbound_queue`` shed with 4004.

        On the loop, with nothing queued ahead of it and no drain, close or
        shed under way, the frame is written at once: no queue, no lock.
        (A frame a worker queued has set ``_scheduled`` before its turn
        ended, and the manager's turns are ordered: it cannot be overtaken.)
        """
        if (
            not self._scheduled
            and self._started
            and self._task is None
            and self._shed is None
            and running_loop() is self._loop
        ):
            connection = self._connection
            if connection.protocol.state is not State.OPEN:
                return  # closing: it could not be sent (as in _flush)
            if not buffer_full(connection):
                broadcast((connection,), text)
                return
        overflow = False
        with self._lock:
            if self._shed is not None:
                return
            self._pending.append(text)
            if len(self._pending) > self.max_outbound_queue:
                overflow = True
                self._pending.clear()
                self._shed = (int(ServerCloseCode.SLOW_CONSUMER), "slow consumer")
            wake = not self._scheduled
            self._scheduled = True
        if overflow:
            self._call_soon(self._start_shed)
        elif wake:
            self._call_soon(self._flush)

    def close(self, code: int, reason: str) -> None:
        """Any thread: close after the frames already queued."""
        with self._lock:
            if self._close is None:
                self._close = (code, reason[:120])
        self._call_soon(self._flush)

    def shed(self, code: int, reason: str) -> None:
        """Loop: close now, dropping the queued frames; abort if the close stalls.

        The close gets :data:`SHED_GRACE` seconds; a peer that does not read
        (its TCP window full) cannot hold it up longer: the TCP connection is
        then aborted, which ends any drain and frees the slot.
        """
        with self._lock:
            if self._shed is not None:
                return
            self._pending.clear()
            self._shed = (code, reason[:120])
        self._start_shed()

    @property
    def idle(self) -> bool:
        """True when no drain or close task is under way (the usual state: writes need none)."""
        return self._task is None

    def start(self) -> None:
        """Loop: from now on queued frames are written (call it after the welcome frame)."""
        self._started = True
        self._flush()

    async def wait_done(self) -> None:
        """Loop: wait for a drain, a close or a shed under way to end (a shed within its grace).

        A drain that ends with a close asked for starts the close: that is waited for too.
        """
        while True:
            running = [t for t in (self._task, self._shed_task) if t is not None and not t.done()]
            if not running:
                return
            await asyncio.shield(running[0])

    def _start_shed(self) -> None:  # on the loop
        if self._shed_task is None and self._shed is not None:
            self._shed_task = asyncio.ensure_future(self._close_or_abort(*self._shed))

    async def _close_or_abort(self, code: int, reason: str) -> None:
        try:
            await asyncio.wait_for(self._connection.close(code, reason), SHED_GRACE)
        except ConnectionClosed:
            pass
        except TimeoutError:
            self._connection.transport.abort()

    def _call_soon(self, callback: Callable[[], object]) -> None:
        _run_on_loop(self._loop, callback)

    def _take(self) -> tuple[list[str], tuple[int, str] | None]:
        with self._lock:
            batch = list(self._pending)
            self._pending.clear()
            self._scheduled = False
            return batch, self._close

    def _flush(self) -> None:  # on the loop
        if not self._started or self._task is not None or self._shed is not None:
            return  # not yet; or the task under way takes what is queued; or shed
        batch, close = self._take()
        for index, text in enumerate(batch):
            if self._shed is not None or self._connection.protocol.state is not State.OPEN:
                return  # shed (the shed task closes); or closing: what is left cannot be sent
            if buffer_full(self._connection):
                self._task = asyncio.ensure_future(self._drain(batch[index:]))
                return
            broadcast((self._connection,), text)
        if close is not None and not self._closing:
            self._closing = True
            if self._connection.state is not State.CLOSED:  # a peer gone: nothing to say
                self._task = asyncio.ensure_future(self._close_connection(*close))

    async def _drain(self, batch: list[str]) -> None:
        """Loop: send with websockets' flow control until nothing is queued, then close if asked."""
        try:
            close = None
            while batch:
                for text in batch:
                    if self._shed is not None:
                        return  # the shed task closes the connection
                    await self._connection.send(text)
                batch, close = self._take()
        except ConnectionClosed:
            return
        finally:
            self._task = None
        if close is not None:
            self._flush()  # nothing queued: it starts the close

    async def _close_connection(self, code: int, reason: str) -> None:
        try:
            await self._connection.close(code, reason)
        except ConnectionClosed:  # pragma: no cover - close() itself does not raise it
            pass
        finally:
            self._task = None


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
    """Loop: ask the tree for a slot without blocking the loop.

    After ``timeout`` seconds the request is withdrawn (503), unless the
    answer is already on its way. A caller cancelled meanwhile withdraws it
    too, and an admission that arrives after that is undone at once: no
    slot is ever left without a connection.
    """
    loop = asyncio.get_running_loop()
    answer: asyncio.Future[Admission]
    answer, hand_over = reply_future(loop, undo=_release)

    def give_up() -> None:  # on the loop, ``timeout`` seconds later
        if not answer.done() and ticket.withdraw():
            answer.set_result(Admission("rejected_unavailable", reason="no answer in time"))

    ticket = tree.admit_nowait(context, port, hand_over)
    timer = loop.call_later(timeout, give_up)
    try:
        return await answer
    except asyncio.CancelledError:
        ticket.withdraw()  # or, if answered already, settle undoes it
        raise
    finally:
        timer.cancel()


def _release(admission: Admission) -> None:
    """Loop: undo an admission that came after its caller was cancelled."""
    if admission.handle is not None:
        admission.handle.closed()


_BINARY_ERROR = json.dumps(
    {
        "type": "error",
        "code": "binary_not_supported",
        "message": "frames are JSON text; binary frames are not accepted",
    }
)


async def serve_connection(
    connection: ServerConnection,
    handle: Handle,
    port: WebSocketPort,
    alive: Keepalive | None = None,
    inbound: InboundRateLimit | None = None,
) -> None:
    """Loop: greet, carry frames to the manager until the connection ends, free the slot.

    ``ConnectionClosed`` never escapes (a traceback per dropped connection
    would slow a disconnect storm); the slot is freed however it ends. A
    client over its ``inbound`` rate is shed with 1008 (the frame over the
    rate is not delivered).
    """
    pinger = None if alive is None else KeepaliveScheduler.of(alive).add(connection, handle)
    started = False
    try:
        await connection.send(welcome_frame(handle.context))
        port.start()  # after the welcome: nothing overtakes it
        started = True
        async for message in connection:
            if inbound is not None and not inbound.allow():
                port.shed(int(ServerCloseCode.POLICY), "message rate exceeded")
                break
            if isinstance(message, str):
                handle.deliver(message)
            else:
                port.send_text(_BINARY_ERROR)
    except ConnectionClosed:
        pass
    finally:
        handle.closed(connection.close_code if port.shed_code is None else port.shed_code)
        if pinger is not None:
            pinger.stop()
        if started and connection.state is not State.CLOSED:  # else nothing is left to send
            port.close(int(ServerCloseCode.NORMAL), "")
        await port.wait_done()
