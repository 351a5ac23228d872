"""The keepalive of every connection on a loop: one timer per grid slot, one task per round.

A dead peer (no close frame, no pong) must free its slot within ping
interval + ping timeout. A task or a timer per connection would do it, at
the price of one more object for the loop to carry, wake and cancel per
connection. Here one :class:`KeepaliveScheduler` per loop (and settings)
keeps every connection in buckets of a shared grid
(:class:`~supervisor.front.keepalive_grid.KeepaliveGrid`): a bucket is one
timer; its pings go out from one short task, one after the other; its
pong deadlines are checked in the timer's callback. A pong is recorded as
a heartbeat; a missed one frees the slot at once and aborts the TCP
connection (websockets' own keepalive would then wait its close timeout
for a peer that cannot answer). Everything here runs on the event loop.
"""

from __future__ import annotations

import asyncio
import functools
import weakref
from typing import ClassVar

import attrs
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed
from websockets.protocol import State

from actors.codes import ServerCloseCode
from actors.ports import Handle
from supervisor.front.keepalive_grid import KeepaliveGrid

__all__ = ["Keepalive", "KeepaliveEntry", "KeepaliveScheduler", "buffer_full"]


@attrs.frozen
class Keepalive:
    """Ping every ``interval`` seconds; a pong later than ``timeout`` means a dead peer."""

    interval: float
    timeout: float


def buffer_full(connection: ServerConnection) -> bool:
    """True once the transport holds as much as its high-water mark (websockets' write limit)."""
    transport = connection.transport
    return bool(transport.get_write_buffer_size() >= transport.get_write_buffer_limits()[1])


class KeepaliveEntry:
    """One connection's place in the scheduler; :meth:`stop` takes it out."""

    __slots__ = ("connection", "generation", "handle", "stopped")

    def __init__(self, connection: ServerConnection, handle: Handle) -> None:
        self.connection: ServerConnection | None = connection
        self.handle: Handle | None = handle
        self.generation = 0  # bumped by each ping and pong: older bucket items are void
        self.stopped = False

    def stop(self) -> None:
        """No more pings; lets go of the connection at once (buckets keep only this entry)."""
        self.stopped = True
        self.connection = None
        self.handle = None


_Item = tuple[KeepaliveEntry, int, bool]  # the entry, its generation, True to ping / False to check


class KeepaliveScheduler:
    """Loop: pings the connections added to it and frees the slot of one that stops answering."""

    _by_loop: ClassVar[
        weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[Keepalive, KeepaliveScheduler]]
    ] = weakref.WeakKeyDictionary()

    @classmethod
    def of(cls, settings: Keepalive) -> KeepaliveScheduler:
        """The running loop's scheduler for ``settings`` (made on first use)."""
        loop = asyncio.get_running_loop()
        schedulers = cls._by_loop.get(loop)
        if schedulers is None:
            schedulers = cls._by_loop[loop] = {}
        scheduler = schedulers.get(settings)
        if scheduler is None:
            scheduler = schedulers[settings] = cls(settings)
        return scheduler

    def __init__(self, settings: Keepalive) -> None:
        # no reference to the loop: the registry keys it weakly, and a value must not keep it
        self._grid = KeepaliveGrid.for_settings(settings.interval, settings.timeout)
        self._buckets: dict[int, list[_Item]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def add(self, connection: ServerConnection, handle: Handle) -> KeepaliveEntry:
        """Start pinging ``connection``; stop with the entry's :meth:`~KeepaliveEntry.stop`."""
        entry = KeepaliveEntry(connection, handle)
        self._next_ping(entry)
        return entry

    def _next_ping(self, entry: KeepaliveEntry) -> None:
        now = asyncio.get_running_loop().time()
        self._put(self._grid.ping_slot(now, now), (entry, entry.generation, True))

    def _put(self, slot: int, item: _Item) -> None:
        bucket = self._buckets.get(slot)
        if bucket is None:
            bucket = self._buckets[slot] = []
            asyncio.get_running_loop().call_at(self._grid.time_of(slot), self._fire, slot)
        bucket.append(item)

    def _fire(self, slot: int) -> None:
        due: list[KeepaliveEntry] = []
        for entry, generation, ping in self._buckets.pop(slot, ()):
            if entry.stopped or generation != entry.generation:
                continue  # closed, or answered since
            if ping:
                due.append(entry)
            else:
                self._missed(entry)
        if due:
            task = asyncio.get_running_loop().create_task(self._ping_all(due))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _ping_all(self, due: list[KeepaliveEntry]) -> None:
        for entry in due:
            connection = entry.connection
            if connection is None or connection.protocol.state is not State.OPEN:
                continue  # closed or closing: its handler frees the slot
            if buffer_full(connection):  # a ping would wait for a peer that does not read
                self._next_ping(entry)  # the supervisor's keepalive rule still applies to it
                continue
            try:
                pong = asyncio.ensure_future(await connection.ping())
            except ConnectionClosed:
                continue
            if entry.stopped:
                continue
            entry.generation += 1
            sent = asyncio.get_running_loop().time()
            self._put(self._grid.check_slot(sent), (entry, entry.generation, False))
            pong.add_done_callback(functools.partial(self._answered, entry, entry.generation))

    def _answered(
        self, entry: KeepaliveEntry, generation: int, pong: asyncio.Future[float]
    ) -> None:
        if pong.cancelled() or pong.exception() is not None:
            return  # the connection is lost; its handler frees the slot
        if entry.stopped or generation != entry.generation or entry.handle is None:
            return
        entry.generation += 1  # the pending check is void
        entry.handle.heartbeat()
        self._next_ping(entry)

    @staticmethod
    def _missed(entry: KeepaliveEntry) -> None:
        handle, connection = entry.handle, entry.connection
        entry.stop()
        if handle is not None and connection is not None:
            handle.closed(int(ServerCloseCode.INTERNAL_ERROR))
            connection.transport.abort()
