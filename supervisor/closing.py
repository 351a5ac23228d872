"""Closes of dropped peers, done in chunks after the reads the loop has waiting.

A mass disconnect reaches the loop as thousands of EOFs. The front frees
each dropped peer's slot as its EOF is read (``ConnectionHandle.peer_gone``);
the rest of its close (``ConnectionHandle.closed``: the manager retired, the
usage reported, about 0.1 ms) can wait, and :class:`DeferredCloses` makes it
wait behind the reads. It does the closes :data:`CHUNK` at a time in timer
callbacks, which asyncio runs after the I/O callbacks of the same loop
iteration: while EOFs keep coming, reading them (and freeing their slots)
comes first, and a backlog of closes holds the next reads back by one chunk
at most. Done as ``call_soon`` callbacks instead, the closes of one read
pass all ran before the next one, and held it back 0.2 s in a 10,000-drop
(docs/PERFORMANCE.md). Runs on the event loop.
"""

from __future__ import annotations

import asyncio
import collections
import logging

from actors.ports import ConnectionHandle

__all__ = ["CHUNK", "DeferredCloses"]

log = logging.getLogger(__name__)

CHUNK = 64
"""Closes done per loop iteration: about 6 ms of work between two reads."""


class DeferredCloses:
    """A queue of closes that the loop does a chunk at a time, after its reads. Loop only."""

    def __init__(self, loop: asyncio.AbstractEventLoop, chunk: int = CHUNK) -> None:
        self._loop = loop
        self._chunk = chunk
        self._queue: collections.deque[tuple[ConnectionHandle, int | None]] = collections.deque()
        self._timer: asyncio.TimerHandle | None = None

    def __len__(self) -> int:
        return len(self._queue)

    def add(self, handle: ConnectionHandle, code: int | None) -> None:
        """Queue ``handle.closed(code)``; the first of a backlog sets the timer."""
        self._queue.append((handle, code))
        if self._timer is None:
            self._timer = self._loop.call_later(0, self._next_chunk)

    def _next_chunk(self) -> None:
        queue = self._queue
        for _ in range(min(self._chunk, len(queue))):
            handle, code = queue.popleft()
            try:
                handle.closed(code)
            except Exception:  # pragma: no cover - closed() only sends; one failure stops no other
                log.exception("close of websocket_id=%s failed", handle.websocket_id)
        self._timer = self._loop.call_later(0, self._next_chunk) if queue else None
