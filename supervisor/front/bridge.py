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
import sys
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from websockets.asyncio.server import ServerConnection, broadcast
from websockets.exceptions import ConnectionClosed
from websockets.protocol import State

from supervisor.front.budget import ConnectionBudget
from supervisor.front.closing import close_within_grace, watch_stall
from supervisor.front.connection import running_loop
from supervisor.front.keepalive import buffer_full

__all__ = ["WebSocketPort", "off_loop", "reply_future", "run_on_loop"]


T = TypeVar("T")


def run_on_loop(
    loop: asyncio.AbstractEventLoop, callback: Callable[..., object], *args: Any
) -> None:
    """Run ``callback(*args)`` on ``loop``: at once if called there, else at its next turn.

    On the loop already (an actor's turn run there), no self-pipe write;
    from any other thread (an actor's, the cluster listener's),
    ``call_soon_threadsafe``. A closed loop (the process is ending, nobody
    waits any more) is ignored. The one way other modules cross to the loop.
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
        run_on_loop(loop, settle, value)

    return future, reply


async def off_loop(function: Callable[[], T]) -> T:
    """Run a blocking call on a fresh daemon thread and await its result.

    A daemon thread, not the default executor: a forced exit never waits for it.
    Returns once the thread has ended too, so a caller that stops the daemon
    leaves no thread of it behind.
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


class WebSocketPort:
    """A websockets connection as a :class:`~actors.ports.Port`.

    ``send_text`` and ``close`` run on actor threads: they queue and wake the
    loop once per batch (not once per frame); on the loop (a handler that runs
    inline) a frame with nothing queued ahead of it is written at once. A
    batch is written straight into the transport (websockets' own
    :func:`~websockets.asyncio.server.broadcast`, no task, no await) while
    its buffer is below its high-water mark; past it, a drain task awaits
    websockets' flow control until the queue is empty. Frames go out in
    order, then the close; nothing before :meth:`start` (the welcome first).

    What waits is held to the ``budget``'s frames and bytes (``sys.getsizeof``,
    from :meth:`send_text` until the transport has it). Beyond either, the
    reader is too slow (or stalled): what waits is dropped and the
    connection shed with 4004 (:meth:`shed`).
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        connection: ServerConnection,
        budget: ConnectionBudget | None = None,
    ) -> None:
        self._loop = loop
        self._connection = connection
        self.budget = budget if budget is not None else ConnectionBudget()
        self._queued_bytes = 0  # of the frames queued by send_text and not yet written
        self._lock = threading.Lock()
        self._pending: collections.deque[str] = collections.deque()
        self._close: tuple[int, str] | None = None
        self._shed: tuple[int, str] | None = None
        self._shed_task: asyncio.Task[None] | None = None
        self._scheduled = False
        self._started = False
        self._closing = False  # the close is under way (or was not needed)
        self._watched = False  # a close waiting behind a drain is watched for a stall
        self.on_shed: Callable[[int], object] | None = None  # told the code, at the shed
        self._task: asyncio.Task[None] | None = None  # draining or closing, only while it does

    @property
    def shed_code(self) -> int | None:
        """The close code the connection was shed with (4004, 1008), or None."""
        return None if self._shed is None else self._shed[0]

    @property
    def shed_with(self) -> tuple[int, str] | None:
        """The close the connection was shed with, ``(code, reason)``, or None."""
        return self._shed

    def send_text(self, text: str) -> None:
        """Any thread: queue one frame; past the budget's frames or bytes shed with 4004.

        On the loop, with nothing queued, draining, closing or shed, a frame
        goes to the transport at once if its buffer is below the high-water
        mark and the frame within ``max_outbound_bytes`` (else the queue's
        path: the same budget). A worker's queued frame has set ``_scheduled``
        before its turn ended, and the manager's turns are ordered: no overtaking.
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
            if not buffer_full(connection) and not self.budget.outbound_over(
                1, sys.getsizeof(text)
            ):
                broadcast((connection,), text)
                return
        overflow = False
        with self._lock:
            if self._shed is not None:
                return
            self._pending.append(text)
            self._queued_bytes += sys.getsizeof(text)
            if self.budget.outbound_over(len(self._pending), self._queued_bytes):
                overflow = True
                self._pending.clear()
                self._queued_bytes = 0
                self._shed = self.budget.outbound_overflow()
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

        The close gets :data:`~supervisor.front.closing.SHED_GRACE` seconds, then
        the TCP connection is aborted (a peer that does not read cannot hold it up).
        """
        with self._lock:
            if self._shed is not None:
                return
            self._pending.clear()
            self._queued_bytes = 0
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
        """Loop: wait for a drain, a close or a shed under way to end (a shed within its grace),
        and for the close that a drain starts when it ends."""
        while True:
            running = [t for t in (self._task, self._shed_task) if t is not None and not t.done()]
            if not running:
                return
            await asyncio.shield(running[0])

    def _start_shed(self) -> None:  # on the loop
        if self._shed_task is None and self._shed is not None:
            self._connection.transport.pause_reading()  # nothing more is parsed, nor answered
            code, reason = self._shed
            if self.on_shed is not None:
                self.on_shed(code)  # its slot is freed now, not once the close is over
            close = close_within_grace(self._connection, code, reason, shed=True)
            self._shed_task = asyncio.ensure_future(close)

    def _unwritten(self) -> int | None:
        """Loop: bytes still to write ahead of a close; None once no drain is under way."""
        if self._task is None or self._closing:
            return None
        return self._queued_bytes + self._connection.transport.get_write_buffer_size()

    def _call_soon(self, callback: Callable[[], object]) -> None:
        run_on_loop(self._loop, callback)

    def _take(self) -> tuple[list[str], tuple[int, str] | None]:
        with self._lock:
            batch = list(self._pending)
            self._pending.clear()
            self._scheduled = False
            return batch, self._close

    def _written(self, size: int) -> None:
        """Loop: ``size`` bytes of frames have reached the transport: they wait no more."""
        if size:
            with self._lock:
                if self._shed is None:
                    self._queued_bytes -= size

    def _flush(self) -> None:  # on the loop
        if self._task is not None and self._close is not None and not self._watched:
            self._watched = True  # a close waits behind a drain: not for a peer that stalls
            watch_stall(self._connection, self._unwritten)
        if not self._started or self._task is not None or self._shed is not None:
            return  # not yet; or the task under way takes what is queued; or shed
        batch, close = self._take()
        written = 0
        try:
            for index, text in enumerate(batch):
                if self._shed is not None or self._connection.protocol.state is not State.OPEN:
                    return  # shed (the shed task closes); or closing: the rest cannot be sent
                if buffer_full(self._connection):
                    self._task = asyncio.ensure_future(self._drain(batch[index:]))
                    return
                broadcast((self._connection,), text)
                written += sys.getsizeof(text)
        finally:
            self._written(written)
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
                    self._written(sys.getsizeof(text))
                batch, close = self._take()
        except ConnectionClosed:
            return
        finally:
            self._task = None
        if close is not None:
            self._flush()  # nothing queued: it starts the close

    async def _close_connection(self, code: int, reason: str) -> None:
        try:
            await close_within_grace(self._connection, code, reason, shed=False)
        finally:
            self._task = None
