"""The front's one module of websockets and asyncio internals: the names it relies on exist,
and the answer to each handshake is reported."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable
from http import HTTPStatus

import pytest
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed, InvalidMessage, InvalidStatus
from websockets.http11 import Request, Response
from websockets.protocol import Protocol
from websockets.server import ServerProtocol

from supervisor.front import connection


def test_the_installed_websockets_is_of_the_series_the_front_was_written_for() -> None:
    import importlib.metadata  # noqa: PLC0415

    connection.check_websockets(importlib.metadata.version("websockets"))


@pytest.mark.parametrize("version", ["16.0", "18.0.1"])
def test_another_websockets_series_is_refused_with_a_clear_message(version: str) -> None:
    with pytest.raises(ImportError, match=f"needs websockets 17.x.*websockets {version}"):
        connection.check_websockets(version)


def test_a_websockets_protocol_still_keeps_its_parser_and_parser_exception() -> None:
    protocol: Protocol = ServerProtocol()
    assert hasattr(protocol, "parser") and hasattr(protocol, "parser_exc")
    assert protocol.parser_exc is None


def test_an_asyncio_socket_transport_still_keeps_its_read_callback() -> None:
    async def probe() -> bool:
        loop = asyncio.get_running_loop()
        left, right = socket.socketpair()
        transport, _ = await loop.connect_accepted_socket(asyncio.Protocol, left)
        try:
            return getattr(transport, "_read_ready_cb", None) is not None
        finally:
            transport.close()
            right.close()

    assert asyncio.run(probe())


def test_running_loop_is_the_loop_on_it_and_none_off_it() -> None:
    async def on_loop() -> bool:
        return connection.running_loop() is asyncio.get_running_loop()

    assert asyncio.run(on_loop())
    assert connection.running_loop() is None


# --- the handshake's answer, reported -----------------------------------------------------------


async def _serve_and_connect(
    process_request: Callable[[ServerConnection, Request], Awaitable[Response | None]],
    open_timeout: float = 5.0,
) -> tuple[list[tuple[int | None, bool]], int | None]:
    """One real handshake on loopback: what call_when_answered heard, and what the client got."""
    heard: list[tuple[int | None, bool]] = []

    async def hooked(conn: ServerConnection, request: Request) -> Response | None:
        assert isinstance(conn, connection.AcyclicConnection)
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
        create_connection=connection.AcyclicConnection,
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
