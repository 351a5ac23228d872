"""The loop side of a connection: what its port writes, in which order, and what it keeps."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import threading
from collections.abc import AsyncIterator

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from supervisor.front.bridge import WebSocketPort, off_loop
from supervisor.front.budget import ConnectionBudget
from supervisor.front.connection import AcyclicConnection
from tests.integration.harness import wait_for

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(60)]

Ports = asyncio.Queue[WebSocketPort]
Stalled = tuple[WebSocketPort, ClientConnection]


ROOMY = ConnectionBudget(max_outbound_bytes=64 * 1024 * 1024)
"""A budget that lets a stalled reader's frames (12.8 MiB here) wait."""


@contextlib.asynccontextmanager
async def port_server(
    budget: ConnectionBudget | None = None,
) -> AsyncIterator[tuple[Server, Ports]]:
    """A websockets server whose handler hands each connection's started port to the test."""
    ports: Ports = asyncio.Queue()

    async def handler(connection: ServerConnection) -> None:
        port = WebSocketPort(asyncio.get_running_loop(), connection, budget)
        port.start()
        await ports.put(port)
        await connection.wait_closed()
        await port.wait_done()

    async with serve(
        handler,
        "127.0.0.1",
        0,
        ping_interval=None,
        compression=None,
        create_connection=AcyclicConnection,
    ) as server:
        yield server, ports


def url(server: Server) -> str:
    return f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/"


def from_thread(*steps: tuple[str, tuple[object, ...]], port: WebSocketPort) -> None:
    """Call the port's methods on a thread of its own, as a manager actor does."""

    def run() -> None:
        for name, args in steps:
            getattr(port, name)(*args)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(5)


async def test_frames_sent_from_another_thread_arrive_in_order_and_the_close_comes_after_them() -> (
    None
):
    async with port_server() as (server, ports), connect(url(server)) as client:
        port = await asyncio.wait_for(ports.get(), 5)
        steps = [("send_text", (f"frame {n}",)) for n in range(300)]
        from_thread(*steps, ("close", (4000, "done")), port=port)
        received = [await asyncio.wait_for(client.recv(), 5) for _ in range(300)]
        assert received == [f"frame {n}" for n in range(300)]
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(client.recv(), 5)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4000
        await wait_for(lambda: port.idle, what="the close task ends")


async def test_a_frame_sent_on_the_loop_with_nothing_queued_is_written_at_once() -> None:
    async with port_server() as (server, ports), connect(url(server)) as client:
        port = await asyncio.wait_for(ports.get(), 5)
        port.send_text("direct")  # on the loop, as an inline handler sends
        assert not port._scheduled and not port._pending  # no flush callback: written
        assert await asyncio.wait_for(client.recv(), 5) == "direct"


async def test_a_frame_sent_on_the_loop_behind_queued_ones_keeps_its_place() -> None:
    async with port_server() as (server, ports), connect(url(server)) as client:
        port = await asyncio.wait_for(ports.get(), 5)
        from_thread(("send_text", ("queued 1",)), ("send_text", ("queued 2",)), port=port)
        port.send_text("from the loop")  # the thread's flush has not run yet: it queues
        received = [await asyncio.wait_for(client.recv(), 5) for _ in range(3)]
        assert received == ["queued 1", "queued 2", "from the loop"]


@contextlib.asynccontextmanager
async def stalled_reader(*steps: tuple[str, tuple[object, ...]]) -> AsyncIterator[Stalled]:
    """A client that reads nothing yet, and its port, once ``steps`` have put it on a drain task.

    ``steps`` must queue more than the kernel's buffers hold (megabytes).
    """
    async with (
        port_server(ROOMY) as (server, ports),
        connect(url(server), max_queue=1, compression=None) as client,
    ):
        port = await asyncio.wait_for(ports.get(), 5)
        from_thread(*steps, port=port)
        await wait_for(lambda: not port.idle, what="the port starts draining")
        yield port, client


async def test_a_reader_that_stops_reading_gets_every_frame_in_order_once_it_reads_again() -> None:
    big = "x" * 65536
    steps = [("send_text", (f"{n:03d}{big}",)) for n in range(200)]
    async with stalled_reader(*steps) as (port, client):
        received = [await asyncio.wait_for(client.recv(), 5) for _ in range(200)]
        assert [int(text[:3]) for text in received] == list(range(200))
        assert all(text[3:] == big for text in received)
        await wait_for(lambda: port.idle, what="the drain ends once the queue is empty")


async def test_waiting_for_a_port_covers_the_close_that_follows_its_drain() -> None:
    steps = [("send_text", ("y" * 65536,)) for _ in range(200)]
    async with stalled_reader(*steps, ("close", (4000, "done"))) as (port, client):
        done = asyncio.ensure_future(port.wait_done())
        for _ in range(200):
            await asyncio.wait_for(client.recv(), 5)
        await asyncio.wait_for(done, 10)
        assert port.idle  # the close that the drain started has ended as well
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(client.recv(), 5)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4000


async def test_off_loop_returns_its_result_only_once_its_thread_has_ended() -> None:
    for n in range(200):  # the thread's end races the loop's wake-up: many tries
        assert await off_loop(functools.partial(abs, n)) == n
        assert not [t for t in threading.enumerate() if t.name == "ws-supervisor-offloop"]


async def test_off_loop_raises_what_the_call_raised() -> None:
    def fail() -> None:
        raise ValueError("bad value")

    with pytest.raises(ValueError, match="bad value"):
        await off_loop(fail)


# --- frames in: straight from the parser, in order ----------------------------------------
