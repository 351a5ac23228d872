"""The front's one package of websockets and asyncio internals: the websockets series it was
written for, and the names of those internals it relies on still there."""

from __future__ import annotations

import asyncio
import collections
import socket

import pytest
from websockets.asyncio.messages import Assembler
from websockets.frames import Frame, Opcode
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


def test_a_websockets_assembler_still_queues_its_frames_in_a_deque_it_empties_as_it_reads() -> None:
    async def probe() -> tuple[bool, bool]:
        assembler = Assembler()
        assembler.put(Frame(Opcode.TEXT, b"queued"))
        queued = isinstance(assembler.frames.queue, collections.deque) and bool(
            assembler.frames.queue
        )
        assert await assembler.get() == "queued"
        return queued, not assembler.frames.queue

    assert asyncio.run(probe()) == (True, True)


@pytest.mark.timeout(30)
def test_an_asyncio_server_still_keeps_its_factory_and_a_loop_still_makes_socket_transports() -> (
    None
):
    async def probe() -> tuple[bool, bool]:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(asyncio.Protocol, "127.0.0.1", 0)
        try:
            factory = getattr(server, "_protocol_factory", None)
            return factory is asyncio.Protocol, callable(loop._make_socket_transport)  # type: ignore[attr-defined]
        finally:
            server.close()
            await server.wait_closed()

    assert asyncio.run(probe()) == (True, True)
