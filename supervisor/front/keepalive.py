"""The keepalive of every connection on a loop: one timer per grid slot, no task at all.

A dead peer (no close frame, no pong) must free its slot within ping
interval + ping timeout, whether or not it ever sent a frame and whether
or not it reads. A task or a timer per connection would do it, at the
price of one more object for the loop to carry, wake and cancel per
connection. Here one :class:`KeepaliveScheduler` per loop (and settings)
keeps every connection in buckets of a shared grid
(:class:`KeepaliveGrid`, pure: below): a bucket is one
timer; in its callback the due pings are written at once
(:func:`~supervisor.front.connection.ping_nowait`: never skipped, never
waiting for a peer to drain, so a peer that does not read is pinged, fails
to answer, and is declared dead like any other) and the pong deadlines are
checked. A pong is recorded as a heartbeat (the first one at :meth:`add`,
so the supervisor's keepalive rule applies from the start too); a missed
one frees the slot at once, recorded as 4003, and aborts the TCP connection
(websockets' own keepalive would then wait its close timeout for a peer
that cannot answer). Everything here but the grid runs on the event loop.

The grid decides when the keepalive pings, and when it declares a peer
dead. One task pings every connection of a loop. It wakes on a grid of ``step``
seconds rather than once per connection: a ping goes out on the last grid
point at least ``step`` before ``interval`` has passed since the last pong,
and the pong deadline is checked on the first grid point at or after
``timeout`` has passed since the ping. The ping's earliness pays for the
check's lateness, so a dead peer is still declared dead within
``interval + timeout`` of its last pong.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import weakref
from typing import ClassVar

import attrs
from websockets.asyncio.server import ServerConnection

from actors.codes import ServerCloseCode
from actors.ports import Handle
from supervisor.front.connection import ping_nowait

__all__ = ["Keepalive", "KeepaliveEntry", "KeepaliveGrid", "KeepaliveScheduler", "buffer_full"]

log = logging.getLogger(__name__)


@attrs.frozen
class KeepaliveGrid:
    """Grid slots (integers) for pings and pong deadlines; times are monotonic seconds."""

    interval: float = attrs.field()
    timeout: float = attrs.field()
    step: float = attrs.field()

    @interval.validator
    @timeout.validator
    @step.validator
    def _positive(self, attribute: attrs.Attribute[float], value: float) -> None:
        if not value > 0:
            raise ValueError(f"{attribute.name} must be > 0, got {value!r}")

    @classmethod
    def for_settings(cls, interval: float, timeout: float, points: int = 20) -> KeepaliveGrid:
        """A grid of ``points`` steps over the shorter of ``interval`` and ``timeout``."""
        return cls(interval, timeout, min(interval, timeout) / points)

    def time_of(self, slot: int) -> float:
        """When ``slot`` comes."""
        return slot * self.step

    def ping_slot(self, answered_at: float, now: float) -> int:
        """The slot of the next ping after a pong (or a start) at ``answered_at``, after ``now``."""
        latest = answered_at + self.interval - self.step
        slot = math.floor(latest / self.step)
        if self.time_of(slot) > latest:  # float rounding: never later than the bound
            slot -= 1
        return max(slot, self._next_after(now))

    def check_slot(self, sent_at: float) -> int:
        """The slot at which a ping sent at ``sent_at`` must have been answered."""
        earliest = sent_at + self.timeout
        slot = math.ceil(earliest / self.step)
        if self.time_of(slot) < earliest:  # float rounding: never before the timeout
            slot += 1
        return slot

    def _next_after(self, now: float) -> int:
        return math.floor(now / self.step) + 1


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

    def add(self, connection: ServerConnection, handle: Handle) -> KeepaliveEntry:
        """Start pinging ``connection``; stop with the entry's :meth:`~KeepaliveEntry.stop`.

        Its start counts as a sign of life: from now on the supervisor's
        keepalive rule applies to it as well, pong or no pong.
        """
        entry = KeepaliveEntry(connection, handle)
        handle.heartbeat()
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
        for entry, generation, ping in self._buckets.pop(slot, ()):
            if entry.stopped or generation != entry.generation:
                continue  # closed, or answered since
            if ping:
                self._ping(entry)
            else:
                self._missed(entry)

    def _ping(self, entry: KeepaliveEntry) -> None:
        connection = entry.connection
        pong = None if connection is None else ping_nowait(connection)
        if pong is None:
            return  # closed or closing: its handler frees the slot
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
            handle.closed(int(ServerCloseCode.IDLE_TIMEOUT))  # no longer live: keepalive missed
            connection.transport.abort()
            log.info("keepalive missed websocket_id=%s code=4003: aborted", handle.websocket_id)
