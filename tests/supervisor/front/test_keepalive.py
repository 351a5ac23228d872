"""The keepalive scheduler: one per loop and settings, and every silent peer reaped in time."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import socket
import weakref
from collections.abc import AsyncIterator, Iterator

import pytest
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.protocol import OPEN

from actors._runtime.dispatch import Dispatcher
from actors.clock import ManualClock, SystemClock
from actors.codes import ServerCloseCode
from actors.context import UserExecutionContext
from actors.handle import ConnectionHandle
from actors.messages import ConnectionClosed
from actors.ports import ManagerStats
from supervisor.front.keepalive import Keepalive, KeepaliveScheduler, buffer_full
from tests.actors.probes import Inbox
from tests.hostile import frame, open_raw, read_to_eof


def test_one_scheduler_serves_every_connection_of_a_loop_with_the_same_settings() -> None:
    async def schedulers() -> tuple[KeepaliveScheduler, ...]:
        same = Keepalive(1.0, 1.0)
        return (
            KeepaliveScheduler.of(same),
            KeepaliveScheduler.of(same),
            KeepaliveScheduler.of(Keepalive(2.0, 1.0)),
        )

    first, again, other = asyncio.run(schedulers())
    assert first is again and other is not first


def test_a_loop_that_has_ended_is_not_kept_alive_by_its_keepalive_scheduler() -> None:
    loop = asyncio.new_event_loop()

    async def use() -> None:
        KeepaliveScheduler.of(Keepalive(1.0, 1.0))

    loop.run_until_complete(use())
    loop.close()
    ended = weakref.ref(loop)
    del loop
    gc.collect()
    assert ended() is None


# --- on real connections: every peer that does not answer is reaped in time ---------------------

INTERVAL = TIMEOUT = 0.5
DEADLINE = INTERVAL + TIMEOUT
LATENESS = 0.6
"""How late a loop on a loaded machine may run the check: the bound itself is the feature."""


@contextlib.asynccontextmanager
async def pinged_server(
    dispatcher: Dispatcher, fill: int = 0
) -> AsyncIterator[tuple[int, asyncio.Queue[tuple[ServerConnection, float]], Inbox]]:
    """A plain websockets server whose connections the scheduler pings (0.5 s + 0.5 s).

    Each connection's handle reports to the returned recorder (its
    supervisor); ``fill`` bytes are written to each at once, behind the
    client's back (a server socket of 4 KiB), so that its buffer is full.
    """
    supervisor, manager = Inbox(dispatcher), Inbox(dispatcher)
    added: asyncio.Queue[tuple[ServerConnection, float]] = asyncio.Queue()

    async def handler(connection: ServerConnection) -> None:
        if fill:
            sock = connection.transport.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
            connection.transport.write(
                b"\x82\x7f" + (fill - 10).to_bytes(8, "big") + bytes(fill - 10)
            )
        context = UserExecutionContext.from_websocket_request("alice")
        clock = SystemClock()
        stats = ManagerStats(connected_at=clock.wall(), last_activity=clock.monotonic())
        handle = ConnectionHandle(context, supervisor.ref, manager.ref, stats, clock)
        entry = KeepaliveScheduler.of(Keepalive(INTERVAL, TIMEOUT)).add(connection, handle)
        await added.put((connection, clock.monotonic()))
        try:
            await connection.wait_closed()
        finally:
            entry.stop()

    async with serve(handler, "127.0.0.1", 0, ping_interval=None, compression=None) as server:
        yield server.sockets[0].getsockname()[1], added, supervisor


@pytest.fixture
def dispatcher() -> Iterator[Dispatcher]:
    running = Dispatcher(workers=1, name="ws-supervisor-test-managers").start()
    yield running
    running.stop(timeout=5)


def reaped_within(supervisor: Inbox, started: float) -> float:
    """Seconds from ``started`` to the handle's close, which must be a missed keepalive (4003)."""
    closed = supervisor.take(ConnectionClosed, timeout=DEADLINE + LATENESS + 2)
    assert closed.code == ServerCloseCode.IDLE_TIMEOUT
    return closed.detected_at - started


@pytest.mark.asyncio
async def test_a_peer_that_never_sends_nor_answers_is_reaped_within_interval_plus_timeout(
    dispatcher: Dispatcher,
) -> None:
    async with pinged_server(dispatcher) as (port, added, supervisor):
        reader, writer = await open_raw(port, welcome=False)
        connection, started = await asyncio.wait_for(added.get(), 5)
        elapsed = await asyncio.to_thread(reaped_within, supervisor, started)
        assert DEADLINE - 0.1 <= elapsed <= DEADLINE + LATENESS, elapsed
        await read_to_eof(reader)  # its TCP connection is aborted
        await asyncio.wait_for(connection.wait_closed(), 5)
        writer.close()


@pytest.mark.asyncio
async def test_a_peer_that_does_not_read_but_sends_is_pinged_all_the_same_and_reaped_in_time(
    dispatcher: Dispatcher,
) -> None:
    async with pinged_server(dispatcher, fill=8 << 20) as (port, added, supervisor):
        _, writer = await open_raw(port, welcome=False, rcvbuf=4096)
        connection, started = await asyncio.wait_for(added.get(), 5)
        assert buffer_full(connection)  # websockets' ping() would wait here for good

        async def look_alive() -> None:
            while True:  # pings and text frames, never a pong to the server's ping
                writer.write(frame(0x9, b"alive") + frame(0x1, b"{}"))
                await asyncio.sleep(0.05)

        sender = asyncio.ensure_future(look_alive())
        try:
            elapsed = await asyncio.to_thread(reaped_within, supervisor, started)
        finally:
            sender.cancel()
        assert elapsed <= DEADLINE + LATENESS, elapsed
        await asyncio.wait_for(connection.wait_closed(), 5)
        writer.transport.abort()


@pytest.mark.asyncio
async def test_a_peer_that_answers_stays_and_every_pong_is_a_heartbeat(
    dispatcher: Dispatcher,
) -> None:
    async with (
        pinged_server(dispatcher) as (port, added, supervisor),
        connect(f"ws://127.0.0.1:{port}/", ping_interval=None) as client,
    ):
        connection, _ = await asyncio.wait_for(added.get(), 5)
        reading = asyncio.ensure_future(client.recv())  # it reads: it answers pings
        await asyncio.sleep(3 * DEADLINE)
        assert connection.protocol.state is OPEN
        assert supervisor.settle() == []  # no close was ever reported
        reading.cancel()


def test_adding_a_connection_is_its_first_sign_of_life() -> None:
    async def added() -> float | None:
        loop = asyncio.get_running_loop()
        left, right = socket.socketpair()
        transport, connection = await loop.connect_accepted_socket(asyncio.Protocol, left)
        try:
            dispatcher = Dispatcher(workers=1, name="ws-supervisor-test-managers").start()
            try:
                inbox = Inbox(dispatcher)
                clock = ManualClock(100.0)
                stats = ManagerStats(connected_at=0.0, last_activity=0.0)
                context = UserExecutionContext.from_websocket_request("alice")
                handle = ConnectionHandle(context, inbox.ref, inbox.ref, stats, clock)
                scheduler = KeepaliveScheduler.of(Keepalive(10.0, 10.0))
                scheduler.add(connection, handle).stop()  # type: ignore[arg-type]
                return stats.last_seen
            finally:
                dispatcher.stop(timeout=5)
        finally:
            transport.close()
            right.close()

    assert asyncio.run(added()) == 100.0
