"""ProxiedConnection on a real websockets server: a trusted proxy's PROXY header is stripped.

Clients are raw loopback sockets from 127.0.0.x source addresses (all of
127.0.0.0/8 is on ``lo``), writing a PROXY header and an upgrade request as a
load balancer would; the server's handler reports the address it sees.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import pytest
from websockets.asyncio.client import connect
from websockets.asyncio.server import Server, ServerConnection, serve

from supervisor.front.connection import AcyclicConnection, ProxiedConnection, proxied_connection
from supervisor.front.proxy import TrustedProxies
from tests.supervisor.front.proxy_headers import upgrade_request, v1, v2

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(60)]

PROXY = "127.0.0.9"


@contextlib.asynccontextmanager
async def server_seeing(
    proxies: TrustedProxies, seen: list[object], open_timeout: float = 5.0
) -> AsyncIterator[Server]:
    """A websockets server whose handler records each connection's ``remote_address``."""

    async def handler(connection: ServerConnection) -> None:
        seen.append(connection.remote_address)
        await connection.wait_closed()

    server = await serve(
        handler,
        "127.0.0.1",
        0,
        create_connection=proxied_connection(proxies),
        open_timeout=open_timeout,
        ping_interval=None,
    )
    async with server:
        yield server


def port_of(server: Server) -> int:
    port: int = server.sockets[0].getsockname()[1]
    return port


async def exchange(port: int, payload: bytes, source: str, pieces: int = 1) -> bytes:
    """Send ``payload`` from ``source`` in ``pieces`` writes; the answer (b"" for none)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
    try:
        step = max(1, -(-len(payload) // pieces))
        for at in range(0, len(payload), step):
            writer.write(payload[at : at + step])
            await writer.drain()
            await asyncio.sleep(0.01)
        try:
            return await asyncio.wait_for(reader.read(4096), 10)
        except ConnectionResetError:
            return b""
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


def trusting(proxy: str = PROXY) -> TrustedProxies:
    return TrustedProxies.from_text(proxy, proxy_protocol=True)


async def test_a_trusted_proxys_header_is_stripped_even_in_pieces_and_names_the_client() -> None:
    seen: list[object] = []
    async with server_seeing(trusting(), seen) as server:
        port = port_of(server)
        for header in (
            v1(("127.0.0.2", 4242), ("127.0.0.1", port)),
            v2(("127.0.0.3", 4343), ("127.0.0.1", port), tlvs=[(5, b"u")], crc=True),
        ):
            answer = await exchange(port, header + upgrade_request(port), PROXY, pieces=7)
            assert answer.startswith(b"HTTP/1.1 101"), answer[:200]
        assert [tuple(address) for address in seen] == [  # type: ignore[arg-type]
            ("127.0.0.2", 4242),
            ("127.0.0.3", 4343),
        ]


async def test_a_health_checks_local_header_leaves_the_proxy_as_the_peer() -> None:
    seen: list[object] = []
    async with server_seeing(trusting(), seen) as server:
        port = port_of(server)
        header = v2(None, None, local=True)
        assert (await exchange(port, header + upgrade_request(port), PROXY)).startswith(
            b"HTTP/1.1 101"
        )
        assert [address[0] for address in seen] == [PROXY]  # type: ignore[index]


@pytest.mark.parametrize(
    "payload",
    [b"", b"PROXY TCP4 127.0.0.2 127.0.0.1 1 2\n", b"\r\n\r\n\x00\r\nQUIT\n\x31"],
    ids=["no header", "bare LF", "bad version"],
)
async def test_a_trusted_peer_without_a_good_header_is_dropped_with_no_answer(
    payload: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[object] = []
    async with server_seeing(trusting(), seen) as server:
        port = port_of(server)
        with caplog.at_level(logging.WARNING, "supervisor.front.connection"):
            assert await exchange(port, payload + upgrade_request(port), PROXY) == b""
        assert seen == []
        assert f"dropped a connection from proxy ('{PROXY}'" in caplog.text


async def test_a_header_that_never_completes_is_dropped_at_the_open_timeout() -> None:
    seen: list[object] = []
    async with server_seeing(trusting(), seen, open_timeout=0.5) as server:
        loop = asyncio.get_running_loop()
        started = loop.time()
        assert await exchange(port_of(server), b"PROXY TCP4 127.0.0.2", PROXY) == b""
        assert 0.4 < loop.time() - started < 5.0
        assert seen == []


async def test_an_untrusted_peers_proxy_header_is_not_believed() -> None:
    seen: list[object] = []
    async with server_seeing(trusting(), seen) as server:
        port = port_of(server)
        forged = v1(("6.6.6.6", 1), ("127.0.0.1", port))
        answer = await exchange(port, forged + upgrade_request(port), "127.0.0.5")
        assert not answer.startswith(b"HTTP/1.1 101")  # websockets: not HTTP, no upgrade
        async with connect(f"ws://127.0.0.1:{port}/ws", local_addr=("127.0.0.5", 0)) as ws:
            await asyncio.sleep(0.05)
            assert ws.state.name == "OPEN"
        assert [address[0] for address in seen] == ["127.0.0.5"]  # type: ignore[index]


async def test_a_proxied_connection_keeps_the_acyclic_connections_duties() -> None:
    cls = proxied_connection(trusting())
    assert issubclass(cls, ProxiedConnection) and issubclass(cls, AcyclicConnection)
    assert cls.proxies.trusts(PROXY) and not ProxiedConnection.proxies.trusts(PROXY)
    lost: list[bool] = []
    connections: list[ServerConnection] = []

    async def handler(connection: ServerConnection) -> None:
        assert isinstance(connection, AcyclicConnection)
        connections.append(connection)
        connection.call_when_lost(lost.append)
        await connection.wait_closed()

    async with serve(handler, "127.0.0.1", 0, create_connection=cls, ping_interval=None) as server:
        port = port_of(server)
        reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(PROXY, 0))
        writer.write(v1(("127.0.0.2", 7), ("127.0.0.1", port)) + upgrade_request(port))
        assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 101")
        for _ in range(100):
            if connections:
                break
            await asyncio.sleep(0.01)
        writer.close()  # gone without a close frame
        for _ in range(200):
            if lost:
                break
            await asyncio.sleep(0.01)
        assert lost == [True]
        connections[0].transport.close()  # the owner's duty after an abrupt loss
