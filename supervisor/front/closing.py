"""Closes the front starts, bounded in time; and closes of dropped peers, done in chunks.

A close waits for the peer to take it, and a peer that does not read would
make it wait for good: websockets' ``close()`` first drains what is
buffered with no time limit, and a drain task waits the same way.
:func:`close_within_grace` and :func:`watch_stall` abort such a peer's TCP
connection once it has taken nothing for :data:`SHED_GRACE` seconds, so its
buffers go with it.

A mass disconnect reaches the loop as thousands of EOFs. The front frees
each dropped peer's slot as its EOF is read (``ConnectionHandle.peer_gone``);
the rest of its close can wait: the manager retired and the usage reported
(``ConnectionHandle.closed``, about 0.1 ms), then the socket closed, which
starts websockets' teardown and the handler's unwinding. :class:`DeferredCloses`
makes them wait behind the reads. It runs the closes :data:`CHUNK` at a time
in timer callbacks, which asyncio runs after the I/O callbacks of the same
loop iteration: while EOFs keep coming, reading them (and freeing their
slots) comes first, and a backlog of closes holds the next reads back by one
chunk at most. A single close runs at the next iteration. Done at once
instead, the teardowns of one pass of reads ran before the next pass, and
held it back by up to 0.7 s in a 10,000-drop (docs/PERFORMANCE-HISTORY.md). Runs on
the event loop.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import Callable

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed
from websockets.protocol import State

__all__ = ["CHUNK", "SHED_GRACE", "DeferredCloses", "close_within_grace", "watch_stall"]

log = logging.getLogger(__name__)

SHED_GRACE = 1.0
"""Seconds a peer has to take a close (or anything written before it) before it is aborted."""


async def close_within_grace(
    connection: ServerConnection, code: int, reason: str, *, shed: bool
) -> None:
    """Loop: close ``connection``; after :data:`SHED_GRACE`, abort it if it is not taking it.

    A ``shed`` connection is aborted at the grace whatever it does; any
    other only while it still has unread bytes waiting (a peer that reads
    but does not answer the close is left to websockets' close timeout).
    """
    close = asyncio.ensure_future(connection.close(code, reason))
    try:
        await asyncio.wait_for(asyncio.shield(close), SHED_GRACE)
        return
    except TimeoutError:
        if shed or connection.transport.get_write_buffer_size() > 0:
            connection.transport.abort()
    with contextlib.suppress(ConnectionClosed):
        await close


def watch_stall(
    connection: ServerConnection, pending: Callable[[], int | None], last: int | None = None
) -> None:
    """Loop: abort ``connection`` once ``pending()`` bytes have not gone down in a grace.

    ``pending`` says what still waits to be written, or None once nothing
    is owed any more (the watch ends). Checked every :data:`SHED_GRACE`: a
    slow reader that takes something each time keeps its connection.
    """
    now = pending()
    if now is None or connection.state is State.CLOSED:
        return
    if last is not None and now >= last:
        connection.transport.abort()  # ends the drain task and its wait: connection_lost
        return
    asyncio.get_running_loop().call_later(SHED_GRACE, watch_stall, connection, pending, now)


CHUNK = 64
"""Closes run per loop iteration: under 10 ms of work between two reads."""


class DeferredCloses:
    """A queue of closes that the loop runs a chunk at a time, after its reads. Loop only."""

    def __init__(self, loop: asyncio.AbstractEventLoop, chunk: int = CHUNK) -> None:
        self._loop = loop
        self._chunk = chunk
        self._queue: collections.deque[Callable[[], None]] = collections.deque()
        self._timer: asyncio.TimerHandle | None = None

    def __len__(self) -> int:
        return len(self._queue)

    def add(self, close: Callable[[], None]) -> None:
        """Queue ``close``; the first of a backlog sets the timer."""
        self._queue.append(close)
        if self._timer is None:
            self._timer = self._loop.call_later(0, self._next_chunk)

    def _next_chunk(self) -> None:
        queue = self._queue
        for _ in range(min(self._chunk, len(queue))):
            close = queue.popleft()
            try:
                close()
            except Exception:  # one failure stops no other close
                log.exception("deferred close failed")
        self._timer = self._loop.call_later(0, self._next_chunk) if queue else None
