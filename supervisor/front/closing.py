"""Closes of dropped peers, done in chunks after the reads the loop has waiting.

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
import logging
from collections.abc import Callable

__all__ = ["CHUNK", "DeferredCloses"]

log = logging.getLogger(__name__)

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
