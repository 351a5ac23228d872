"""The bridge held to a connection's budget: outbound bytes, bounded closes, the inbound backlog."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator, Callable

import pytest
import pytest_asyncio
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.protocol import State

from actors.codes import ServerCloseCode
from actors.context import UserExecutionContext
from actors.tree import SupervisionTree
from supervisor.front.budget import ConnectionBudget
from supervisor.front.closing import SHED_GRACE
from supervisor.front.embed import serve_supervised
from tests.helpers import make_config
from tests.supervisor.front.test_bridge import ROOMY, from_thread, port_server, stalled_reader, url

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(60)]

FRAME = "z" * 65536


async def test_frames_past_the_outbound_bytes_shed_a_stalled_reader_with_4004_below_its_count() -> (
    None
):
    budget = ConnectionBudget(max_outbound_bytes=1 << 20, max_outbound_frames=1000)
    async with (
        port_server(budget) as (server, ports),
        connect(url(server), max_queue=1, compression=None) as client,
    ):
        port = await asyncio.wait_for(ports.get(), 5)
        steps = [("send_text", (FRAME,))] * 400  # 26 MiB in 400 frames: under the frame count
        from_thread(*steps, port=port)
        assert port.shed_code == ServerCloseCode.SLOW_CONSUMER
        assert port._queued_bytes == 0  # what waited was dropped
        await asyncio.wait_for(port.wait_done(), SHED_GRACE + 5)
        assert client.state is not State.OPEN or client.close_code is None


async def test_a_frame_sent_on_the_loop_over_the_outbound_bytes_is_shed_not_written_at_once() -> (
    None
):
    budget = ConnectionBudget(max_outbound_bytes=1 << 20, max_outbound_frames=1000)
    async with port_server(budget) as (server, ports), connect(url(server)) as client:
        port = await asyncio.wait_for(ports.get(), 5)
        port.send_text("z" * 1000)  # on the loop, as an inline handler sends: within, at once
        assert await asyncio.wait_for(client.recv(), 5) == "z" * 1000
        port.send_text("z" * (2 << 20))  # one frame over the bytes: the queue's path sheds it
        assert port.shed_code == ServerCloseCode.SLOW_CONSUMER
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(client.recv(), 5)  # nothing but the close came
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == ServerCloseCode.SLOW_CONSUMER


async def test_queued_bytes_count_until_the_transport_takes_them_then_return_to_zero() -> None:
    steps = [("send_text", (FRAME,))] * 200
    async with stalled_reader(*steps) as (port, client):
        assert port._queued_bytes > ROOMY.max_outbound_bytes // 16  # megabytes wait
        for _ in range(200):
            await asyncio.wait_for(client.recv(), 5)
        assert port._queued_bytes == 0


async def test_a_close_to_a_peer_that_does_not_read_is_aborted_after_the_grace() -> None:
    steps = [("send_text", (FRAME,))] * 200
    async with stalled_reader(*steps) as (port, _):
        started = time.monotonic()
        from_thread(("close", (int(ServerCloseCode.IDLE_TIMEOUT), "idle")), port=port)
        await asyncio.wait_for(port.wait_done(), SHED_GRACE + 5)  # never the client's whim
        elapsed = time.monotonic() - started
        assert SHED_GRACE * 0.9 <= elapsed <= 2 * SHED_GRACE + 3, elapsed
        server_side = port._connection
        await asyncio.wait_for(server_side.wait_closed(), 5)  # aborted: its buffers are gone
        assert server_side.transport.get_write_buffer_size() == 0


async def test_a_close_to_a_peer_that_reads_is_still_a_full_closing_handshake() -> None:
    async with port_server() as (server, ports), connect(url(server)) as client:
        port = await asyncio.wait_for(ports.get(), 5)
        from_thread(("send_text", ("last",)), ("close", (4000, "bye")), port=port)
        assert await asyncio.wait_for(client.recv(), 5) == "last"
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(client.recv(), 5)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4000
        assert closed.value.sent is not None  # the client answered: nothing was aborted
        await asyncio.wait_for(port.wait_done(), 5)


# --- the inbound backlog -------------------------------------------------------------------


@pytest_asyncio.fixture
async def blocked_tree() -> AsyncIterator[tuple[SupervisionTree, threading.Event]]:
    """A tree whose handler (on a dispatcher worker) waits until the event is set."""
    release = threading.Event()

    def handler(context: UserExecutionContext, text: str, send: Callable[[str], None]) -> None:
        release.wait(10)

    loop = asyncio.get_running_loop()
    tree = SupervisionTree(make_config(), handler_factory=lambda: handler)
    await loop.run_in_executor(None, tree.start)
    yield tree, release
    release.set()
    await loop.run_in_executor(None, tree.stop)


async def test_a_client_that_outpaces_its_handler_past_the_inbound_bytes_is_closed_with_1008(
    blocked_tree: tuple[SupervisionTree, threading.Event],
) -> None:
    tree, release = blocked_tree

    async def handler(connection: ServerConnection) -> None:
        await serve_supervised(tree, connection, "alice")  # the default budget: 2 MiB

    big = json.dumps({"type": "echo", "data": "x" * 900_000})
    async with serve(handler, "127.0.0.1", 0, ping_interval=None) as server:
        address = f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/"
        async with connect(address, max_size=None) as client:
            assert json.loads(await client.recv())["type"] == "welcome"
            for _ in range(2):  # the first waits in its handler, the second in the inbox
                await client.send(big)
            await asyncio.sleep(0.3)
            assert client.state is State.OPEN and tree.ledger.usage("alice") == 1
            await client.send(big)  # 2.7 MB would wait: over the 2 MiB budget
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(client.recv(), 5)
            assert (client.close_code, client.close_reason) == (1008, "inbound backlog")
        release.set()
    deadline = time.monotonic() + 5
    while tree.ledger.usage("alice") and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    assert tree.ledger.usage("alice") == 0
