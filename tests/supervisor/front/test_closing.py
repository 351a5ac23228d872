"""Closes: deferred ones run a chunk per loop iteration; the front's own bounded in time."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import AsyncIterator, Callable

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.protocol import State

from supervisor.front.closing import SHED_GRACE, DeferredCloses, close_within_grace, watch_stall

pytestmark = pytest.mark.asyncio


async def _until_empty(closes: DeferredCloses) -> None:
    for _ in range(100):
        if len(closes) == 0:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{len(closes)} closes still queued")


async def test_deferred_closes_wait_behind_the_reads_ready_and_run_a_chunk_per_iteration() -> None:
    events: list[str] = []
    reader, writer = socket.socketpair()

    def close(n: int) -> Callable[[], None]:
        def run() -> None:
            events.append(f"close {n}")
            if n == 1:
                writer.send(b"x")  # a read becomes ready while the rest wait

        return run

    def on_read() -> None:
        reader.recv(16)
        events.append("read")

    loop = asyncio.get_running_loop()
    loop.add_reader(reader, on_read)
    try:
        closes = DeferredCloses(loop, chunk=2)
        for n in range(5):
            closes.add(close(n))
        writer.send(b"x")  # ready at the next iteration's poll, as the timer falls due
        assert events == [] and len(closes) == 5  # nothing runs on the caller's turn
        await _until_empty(closes)
    finally:
        loop.remove_reader(reader)
        reader.close()
        writer.close()
    assert events == ["read", "close 0", "close 1", "read", "close 2", "close 3", "close 4"]


async def test_a_close_queued_on_a_quiet_loop_runs_at_its_next_iteration() -> None:
    ran: list[int] = []
    closes = DeferredCloses(asyncio.get_running_loop())
    closes.add(lambda: ran.append(1))
    assert ran == []
    await asyncio.sleep(0)  # the timer falls due at once
    await asyncio.sleep(0)
    assert ran == [1] and len(closes) == 0


async def test_a_close_that_raises_is_logged_and_the_others_still_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    ran: list[int] = []

    def broken() -> None:
        raise RuntimeError("boom")

    closes = DeferredCloses(asyncio.get_running_loop(), chunk=2)
    for close in (lambda: ran.append(0), broken, lambda: ran.append(2), lambda: ran.append(3)):
        closes.add(close)
    with caplog.at_level(logging.ERROR, logger="supervisor.front.closing"):
        await _until_empty(closes)
    assert ran == [0, 2, 3]
    assert [r.getMessage() for r in caplog.records] == ["deferred close failed"]
    assert caplog.records[0].exc_info is not None  # with its traceback, for the log reader


# --- closes bounded in time ------------------------------------------------------------------


@contextlib.asynccontextmanager
async def one_connection() -> AsyncIterator[tuple[ServerConnection, ClientConnection]]:
    """A real server connection and its client (which reads only if the test makes it)."""
    served: asyncio.Queue[ServerConnection] = asyncio.Queue()

    async def handler(connection: ServerConnection) -> None:
        await served.put(connection)
        await connection.wait_closed()

    async with (
        serve(handler, "127.0.0.1", 0, ping_interval=None) as server,
        connect(f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/") as client,
    ):
        yield await asyncio.wait_for(served.get(), 5), client


async def test_a_stall_watch_aborts_a_connection_whose_unwritten_bytes_do_not_go_down() -> None:
    async with one_connection() as (connection, _):
        started = asyncio.get_running_loop().time()
        watch_stall(connection, lambda: 1000)
        await asyncio.wait_for(connection.wait_closed(), SHED_GRACE + 3)
        elapsed = asyncio.get_running_loop().time() - started
        assert SHED_GRACE * 0.9 <= elapsed <= SHED_GRACE + 2, elapsed


async def test_a_stall_watch_spares_a_slow_reader_that_takes_something_every_grace() -> None:
    left = iter([3000, 2000, 1000, None])  # it reads, slowly; then nothing is owed any more
    async with one_connection() as (connection, client):
        watch_stall(connection, lambda: next(left))
        await asyncio.sleep(3.5 * SHED_GRACE)
        assert connection.state is State.OPEN
        await client.close()


async def test_a_close_within_the_grace_is_a_full_closing_handshake_with_a_reader() -> None:
    async with one_connection() as (connection, client):
        reading = asyncio.ensure_future(client.wait_closed())
        await asyncio.wait_for(close_within_grace(connection, 4000, "bye", shed=True), 5)
        await asyncio.wait_for(reading, 5)
        assert client.close_code == 4000 and connection.close_code == 4000
