"""AcyclicConnection on real connections: the byte budget it carries out, the answer to each
handshake reported, and a peer's close frame freeing its slot."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from http import HTTPStatus

import pytest
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed, InvalidMessage, InvalidStatus
from websockets.http11 import Request, Response
from websockets.protocol import OPEN

from supervisor.front.bridge import WebSocketPort
from supervisor.front.budget import WRITE_HIGH, ConnectionBudget
from supervisor.front.connection import AcyclicConnection
from supervisor.front.limits import InboundRateLimit
from tests.hostile import all_slots_free, close_frame, frame, handshake, open_raw, read_to_eof
from tests.integration.harness import running_daemon, wait_for, ws_url

Served = tuple[AcyclicConnection, WebSocketPort]


@contextlib.asynccontextmanager
async def bounded_server(
    budget: ConnectionBudget,
    rate: tuple[float, int] | None = None,
    admission_delay: float = 0.0,
    sndbuf: int | None = None,
) -> AsyncIterator[tuple[int, asyncio.Queue[Served]]]:
    """A websockets server of bounded connections, each guarded by a port (and a rate).

    With ``sndbuf`` the server's socket buffer is that small: the transport's
    own buffer fills at once when the client does not read.
    """
    served: asyncio.Queue[Served] = asyncio.Queue()

    async def process_request(connection: ServerConnection, request: Request) -> None:
        await asyncio.sleep(admission_delay)  # as an admission takes its time

    async def handler(connection: ServerConnection) -> None:
        assert isinstance(connection, AcyclicConnection)
        if sndbuf is not None:
            sock = connection.transport.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
        port = WebSocketPort(asyncio.get_running_loop(), connection, budget)
        limit = None if rate is None else InboundRateLimit(*rate)
        connection.guard(limit, port.shed)
        port.start()
        await served.put((connection, port))
        await connection.wait_closed()
        await port.wait_done()

    async with serve(
        handler,
        "127.0.0.1",
        0,
        ping_interval=None,
        compression=None,
        process_request=process_request,
        write_limit=WRITE_HIGH,
        create_connection=AcyclicConnection.bounded(budget),
    ) as server:
        yield server.sockets[0].getsockname()[1], served


async def read_until(reader: asyncio.StreamReader, end: bytes, timeout: float = 30.0) -> bytes:
    """Read until what was read holds ``end``."""
    data = b""
    async with asyncio.timeout(timeout):
        while end not in data:
            chunk = await reader.read(1 << 20)
            assert chunk, f"EOF before {end!r}"
            data += chunk
    return data


@pytest.mark.asyncio
async def test_a_handshake_over_its_bytes_gets_431_and_never_reaches_the_handler() -> None:
    budget = ConnectionBudget(max_handshake_bytes=2048)
    async with bounded_server(budget) as (port, served):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(handshake(extra=f"X-Pad: {'a' * 2100}\r\n").encode())
        answer = await read_to_eof(reader)
        writer.close()
        assert answer.startswith(b"HTTP/1.1 431 "), answer[:80]
        assert b"more than 2048 bytes of request line and headers" in answer
        assert served.empty()
        _, ws_writer = await open_raw(
            port, welcome=False, extra=f"X-Pad: {'a' * 1500}\r\n"
        )  # within
        connection, _ = await asyncio.wait_for(served.get(), 5)
        assert connection.protocol.state is OPEN
        ws_writer.close()


@pytest.mark.asyncio
async def test_frames_sent_before_the_upgrade_past_the_handshake_bytes_cut_the_connection() -> None:
    budget = ConnectionBudget(max_handshake_bytes=4096)
    async with bounded_server(budget, admission_delay=0.5) as (port, served):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(handshake().encode())
        await asyncio.sleep(0.1)  # the head is parsed: the admission is under way
        writer.write(frame(0x9, b"p" * 125) * 40)  # 5 KiB of pings before the 101
        answer = await read_to_eof(reader)
        writer.close()
        assert not answer.startswith(b"HTTP/1.1 101")
        assert b"\x8a" not in answer  # no pong was written before a 101
        assert served.empty()


@pytest.mark.parametrize("opcode", [0x9, 0xA], ids=["pings", "unsolicited pongs"])
@pytest.mark.asyncio
async def test_control_frames_pay_the_message_rate_and_a_flood_is_closed_with_1008(
    opcode: int,
) -> None:
    async with bounded_server(ConnectionBudget(), rate=(5.0, 20)) as (port, served):
        reader, writer = await open_raw(port, welcome=False)
        connection, _ = await asyncio.wait_for(served.get(), 5)
        writer.write(frame(opcode, b"x") * 20)  # the burst: every ping answered
        await writer.drain()
        await asyncio.sleep(0.2)
        assert connection.protocol.state is OPEN
        writer.write(frame(opcode, b"x") * 30)
        answer = await read_to_eof(reader)
        writer.close()
        assert close_frame(answer) == (1008, "control frame rate exceeded")
        pongs = answer.count(b"\x8a\x01x")
        if opcode == 0x9:  # answered up to the one over the rate, within one read
            assert 20 <= pongs <= 50, pongs
        else:
            assert pongs == 0


Stalled = tuple[asyncio.StreamReader, asyncio.StreamWriter, AcyclicConnection]


@contextlib.asynccontextmanager
async def stalled(frames: int) -> AsyncIterator[Stalled]:
    """A client that does not read, ``frames`` frames of 64 KiB (a head of 10 bytes each) sent
    to it: its connection's buffer is over its high-water mark, and reading paused."""
    budget = ConnectionBudget(max_outbound_bytes=64 << 20)
    async with bounded_server(budget, sndbuf=4096) as (port, served):
        reader, writer = await open_raw(port, welcome=False, rcvbuf=4096)
        connection, ws_port = await asyncio.wait_for(served.get(), 5)
        for _ in range(frames):  # megabytes: far more than the socket buffers take
            ws_port.send_text("x" * 65536)
        await wait_for(lambda: not connection.transport.is_reading(), what="reading paused")
        yield reader, writer, connection


@pytest.mark.asyncio
async def test_a_peer_that_does_not_read_is_not_read_either_until_it_reads_again() -> None:
    async with stalled(64) as (reader, writer, connection):
        writer.write(frame(0x9, b"unread"))  # a ping it cannot see while it does not read
        await writer.drain()
        await asyncio.sleep(0.2)
        assert connection.transport.is_reading() is False
        data = await read_until(reader, b"\x8a\x06unread")  # it reads all: the ping is answered
        assert data.endswith(b"\x8a\x06unread")  # after every frame written before it
        assert connection.transport.is_reading()
        writer.close()


@pytest.mark.parametrize(
    ("payload", "code", "reason"),
    [
        (frame(0x9, b"x"), 1008, "control frame flood"),
        (frame(0x1, b"{}"), 4004, "slow consumer"),
    ],
    ids=["a ping", "a data frame"],
)
@pytest.mark.asyncio
async def test_a_write_buffer_found_over_its_ceiling_after_a_read_sheds_the_connection(
    payload: bytes, code: int, reason: str
) -> None:
    budget = ConnectionBudget(max_outbound_bytes=8192)
    async with bounded_server(budget, sndbuf=4096) as (port, served):
        _, writer = await open_raw(port, welcome=False, rcvbuf=4096)
        connection, ws_port = await asyncio.wait_for(served.get(), 5)
        connection.transport.write(b"\0" * (budget.write_ceiling * 2))  # past it, behind its back
        connection.data_received(payload)  # a read the transport had in hand
        await wait_for(lambda: ws_port.shed_code is not None, what="the shed")
        assert ws_port.shed_code == code
        await asyncio.wait_for(connection.wait_closed(), 5)  # aborted within the grace
        writer.close()
        assert reason in repr(ws_port._shed)


# --- the handshake's answer, reported -----------------------------------------------------------


async def _serve_and_connect(
    process_request: Callable[[ServerConnection, Request], Awaitable[Response | None]],
    open_timeout: float = 5.0,
) -> tuple[list[tuple[int | None, bool]], int | None]:
    """One real handshake on loopback: what call_when_answered heard, and what the client got."""
    heard: list[tuple[int | None, bool]] = []

    async def hooked(conn: ServerConnection, request: Request) -> Response | None:
        assert isinstance(conn, AcyclicConnection)
        conn.call_when_answered(lambda status, dropped: heard.append((status, dropped)))
        return await process_request(conn, request)

    async def handler(conn: ServerConnection) -> None:
        await conn.close()

    async with serve(
        handler,
        "127.0.0.1",
        0,
        process_request=hooked,
        open_timeout=open_timeout,
        create_connection=AcyclicConnection,
    ) as server:
        port = server.sockets[0].getsockname()[1]
        got: int | None = None
        try:
            async with connect(f"ws://127.0.0.1:{port}/", open_timeout=5) as ws:
                got = 101
                await ws.wait_closed()
        except InvalidStatus as refused:
            got = refused.response.status_code
        except (InvalidMessage, ConnectionClosed, OSError):
            got = None  # dropped: no answer at all
        await asyncio.sleep(0.05)
    return heard, got


async def _accept(conn: ServerConnection, request: Request) -> Response | None:
    return None


async def _not_found(conn: ServerConnection, request: Request) -> Response | None:
    return conn.respond(HTTPStatus.NOT_FOUND, "no\n")


async def _hang(conn: ServerConnection, request: Request) -> Response | None:
    await asyncio.sleep(30)
    return None


async def _raise(conn: ServerConnection, request: Request) -> Response | None:
    raise RuntimeError("a bug in process_request")


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    ("process_request", "open_timeout", "expected"),
    [
        (_accept, 5.0, ((101, False), 101)),
        (_not_found, 5.0, ((404, False), 404)),
        (_raise, 5.0, ((500, False), 500)),
        (_hang, 0.3, ((None, True), None)),
    ],
    ids=["upgrade", "refusal", "exception", "open_timeout"],
)
def test_the_answer_to_a_handshake_is_reported_once_with_its_status_or_as_dropped(
    process_request: Callable[[ServerConnection, Request], Awaitable[Response | None]],
    open_timeout: float,
    expected: tuple[tuple[int | None, bool], int | None],
) -> None:
    heard, got = asyncio.run(_serve_and_connect(process_request, open_timeout))
    reported, client_saw = expected
    assert heard == [reported]
    assert got == client_saw


@pytest.mark.asyncio
async def test_a_client_whose_close_frame_came_has_its_slot_freed_before_it_closes_its_socket() -> (
    None
):
    async with running_daemon() as daemon:
        reader, writer = await open_raw(daemon.front.port, "hal")
        assert daemon.tree.ledger.usage("hal") == 1
        writer.write(frame(0x8, struct.pack("!H", 1000) + b"bye"))  # and the socket stays open
        await wait_for(lambda: daemon.tree.ledger.usage("hal") == 0, 0.5, "hal's slot free")
        assert close_frame(await read_to_eof(reader)) == (1000, "bye")  # its close echoed
        writer.close()
        await all_slots_free(daemon)


async def _plain_connection_attributes() -> set[str]:
    """The attributes of a plain websockets server connection, open, after one echo."""
    seen: list[ServerConnection] = []

    async def echo(connection: ServerConnection) -> None:
        seen.append(connection)
        async for message in connection:
            await connection.send(message)

    async with serve(echo, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        async with connect(f"ws://127.0.0.1:{port}") as client:
            await client.send("hi")
            assert await client.recv() == "hi"
            return set(vars(seen[0]))


@pytest.mark.asyncio
async def test_an_open_connection_has_one_attribute_more_than_websockets_own() -> None:
    # CPython shares the keys of up to 30 instance attributes among a class's instances; past
    # them every connection gets a dict of its own (1.6 KiB more each, measured)
    plain = await _plain_connection_attributes()
    async with running_daemon() as daemon, connect(ws_url(daemon, "ada")) as client:
        await client.recv()  # the welcome
        await client.send('{"type": "echo", "data": 1}')
        await client.recv()
        [connection] = daemon.front.server.connections  # type: ignore[union-attr]
        assert set(vars(connection)) - plain == {"_front"}
        assert len(vars(connection)) <= 30
