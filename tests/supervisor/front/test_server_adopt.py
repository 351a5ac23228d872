"""The front of a worker: connections handed over with the bytes read, served as its own.

A real tree and a :class:`WebSocketFront` serve an unreachable Unix socket,
as a worker's does; the test plays the master: it accepts on a loopback TCP
port, reads the request head (and whatever came with it), and hands the
socket and those bytes to :meth:`WebSocketFront.adopt`. Real websockets
clients connect to that port.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from actors.tree import SupervisionTree
from supervisor.front.auth import Authenticator
from supervisor.front.bridge import off_loop
from supervisor.front.server import WebSocketFront
from tests.integration.harness import loopback_config, recv_json, wait_for

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(60)]


def unreachable_socket(folder: Path) -> socket.socket:
    """A bound, listening Unix socket whose path is gone: nobody can connect to it."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(folder / "idle"))
    (folder / "idle").unlink()
    sock.listen(1)
    return sock


class Master:
    """Accepts on a loopback port, reads each head, hands the socket to the front."""

    def __init__(self, front: WebSocketFront, user_of: Mapping[str, str]) -> None:
        self.front = front
        self.user_of = user_of  # what "authenticated" a path's request, by its path
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.setblocking(False)
        self.port = self.listener.getsockname()[1]
        self.task = asyncio.ensure_future(self._serve())

    async def _serve(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            sock, _ = await loop.sock_accept(self.listener)
            received = b""
            while b"\r\n\r\n" not in received:
                received += await loop.sock_recv(sock, 65536)
            target = received.split(b" ", 2)[1].decode()
            self.front.adopt(sock, received, self.user_of.get(target, ""))

    async def close(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task
        self.listener.close()


@contextlib.asynccontextmanager
async def worker_front(
    tmp_path: Path, user_of: Mapping[str, str], overrides: Mapping[str, Any] | None = None
) -> AsyncIterator[tuple[WebSocketFront, Master]]:
    config = loopback_config(overrides)
    tree = SupervisionTree(config)
    await off_loop(tree.start)
    front = WebSocketFront(config, tree, Authenticator.from_config(config.auth, config.profile, {}))
    master: Master | None = None
    try:
        await front.start(unreachable_socket(tmp_path))
        master = Master(front, user_of)
        yield front, master
    finally:
        if master is not None:
            await master.close()
        front.stop_accepting()
        await off_loop(tree.stop)
        if not await front.wait_closed(5):
            front.abort()


async def test_a_handed_connection_is_served_as_the_user_the_master_established(
    tmp_path: Path,
) -> None:
    # the query names mallory, the master established alice: the front trusts the master
    async with worker_front(tmp_path, {"/ws?user_id=mallory": "alice"}) as (front, master):
        ws = await connect(f"ws://127.0.0.1:{master.port}/ws?user_id=mallory", open_timeout=5)
        welcome = await recv_json(ws)
        assert (welcome["type"], welcome["user_id"]) == ("welcome", "alice")
        await ws.send(json.dumps({"type": "echo", "data": 7}))
        assert await recv_json(ws) == {"type": "echo", "data": 7}
        assert front.tree.ledger.usage("alice") == 1
        assert front.tree.ledger.usage("mallory") == 0
        assert front.port == 0  # it serves no TCP port of its own
        await ws.close()


async def test_a_frame_read_with_the_head_is_handled_after_the_welcome(tmp_path: Path) -> None:
    # the tree's default handler echoes each frame as it came
    async with worker_front(tmp_path, {"/ws?user_id=bob": "bob"}) as (_, master):
        loop = asyncio.get_running_loop()
        raw = socket.create_connection(("127.0.0.1", master.port))
        raw.setblocking(False)
        head = (
            b"GET /ws?user_id=bob HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            b"Sec-WebSocket-Version: 13\r\n\r\n"
        )
        text = b"sent with the head"
        mask = b"\x01\x02\x03\x04"
        masked = bytes(byte ^ mask[i % 4] for i, byte in enumerate(text))
        frame = bytes([0x81, 0x80 | len(text)]) + mask + masked
        await loop.sock_sendall(raw, head + frame)  # one segment: the master reads both
        answer = b""
        while text not in answer:
            answer += await asyncio.wait_for(loop.sock_recv(raw, 65536), 5)
        raw.close()
    assert answer.startswith(b"HTTP/1.1 101 ")
    assert answer.index(b'"welcome"') < answer.index(text)


async def test_a_handed_request_that_is_no_upgrade_gets_websockets_own_refusal(
    tmp_path: Path,
) -> None:
    async with worker_front(tmp_path, {}) as (front, master):
        loop = asyncio.get_running_loop()
        raw = socket.create_connection(("127.0.0.1", master.port))
        raw.setblocking(False)
        await loop.sock_sendall(raw, b"GET /ws?user_id=bob HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = await asyncio.wait_for(loop.sock_recv(raw, 65536), 5)
        raw.close()
        assert answer.startswith(b"HTTP/1.1 426 ")
        assert front.tree.ledger.usage("bob") == 0


async def test_the_address_rate_is_the_master_s_and_not_counted_again(tmp_path: Path) -> None:
    limits = {
        "limits": {"handshakes_per_second_per_address": 0.01, "handshake_burst_per_address": 1}
    }
    async with worker_front(tmp_path, {"/ws?user_id=carol": "carol"}, limits) as (_, master):
        held = []
        for _ in range(3):  # a burst of one for the address, yet all three are served
            ws = await connect(f"ws://127.0.0.1:{master.port}/ws?user_id=carol", open_timeout=5)
            assert (await recv_json(ws))["type"] == "welcome"
            held.append(ws)
        for ws in held:
            await ws.close()


async def test_a_worker_that_stopped_accepting_answers_a_late_hand_off_503(
    tmp_path: Path,
) -> None:
    async with worker_front(tmp_path, {"/ws?user_id=dave": "dave"}) as (front, master):
        front.stop_accepting()
        with pytest.raises(InvalidStatus) as refused:
            await connect(f"ws://127.0.0.1:{master.port}/ws?user_id=dave", open_timeout=5)
        assert refused.value.response.status_code == 503
        # admitted before websockets refused it (the server no longer serves): the slot is
        # freed when the connection is lost, a loop turn after the client has its answer
        await wait_for(lambda: front.tree.ledger.usage("dave") == 0, what="dave's slot freed")
