"""Raw TCP against the master of ``serve --workers``: it reads every head before any worker.

Every malformed or hostile head gets an HTTP error or a close, never an
upgrade and never a slot; the master and its workers stay up, and a user
connected before keeps being served.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from websockets.asyncio.client import ClientConnection

from supervisor.front.auth import Authenticator
from supervisor.workers.head import MAX_HEAD
from supervisor.workers.master import Master
from tests.helpers import make_config
from tests.hostile import handshake, open_client, ping_ok, read_to_eof
from tests.hostile.test_raw_socket import HANDSHAKES

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(120)]

OPEN_TIMEOUT = 1.0


@pytest_asyncio.fixture
async def master_and_bystander() -> AsyncIterator[tuple[Master, ClientConnection]]:
    config = make_config(
        {
            "server": {"host": "127.0.0.1", "port": 0, "admission_timeout": 0.5},
            "admin": {"host": "127.0.0.1", "port": 0},
            "limits": {"open_timeout": OPEN_TIMEOUT},
        }
    )
    master = Master(
        config,
        2,
        authenticator=Authenticator.from_config(config.auth, config.profile, {}),
        admin_token=None,
        log_text=lambda _: None,
    )
    ready = asyncio.Event()
    task = asyncio.ensure_future(master.serve(on_ready=lambda _: ready.set()))
    await asyncio.wait_for(ready.wait(), 60)
    try:
        url = f"ws://127.0.0.1:{master.acceptor.port}/ws?user_id=bob"
        bystander, _ = await open_client(url)
        yield master, bystander
        await ping_ok(bystander)
        await bystander.close()
    finally:
        master.request_stop()
        await asyncio.wait_for(task, 60)


async def send_raw(port: int, data: bytes, timeout: float = 5.0) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        return await read_to_eof(reader, timeout)
    finally:
        writer.transport.abort()


async def slots(master: Master) -> int:
    return int((await master.backend.state())["root"]["slots_held"])


async def test_every_malformed_head_gets_an_error_or_a_close_and_no_slot(
    master_and_bystander: tuple[Master, ClientConnection],
) -> None:
    master, bystander = master_and_bystander
    for name, data in HANDSHAKES.items():
        answer = await send_raw(master.acceptor.port, data)
        assert answer == b"" or answer.startswith((b"HTTP/1.1 4", b"HTTP/1.1 5")), name
        assert await slots(master) == 1, name  # the bystander's only
    await ping_ok(bystander)
    assert all(seat.serving and seat.restarts == 0 for seat in master.seats)


async def test_a_head_over_the_master_s_limit_is_431(
    master_and_bystander: tuple[Master, ClientConnection],
) -> None:
    master, _ = master_and_bystander
    big = handshake(extra="".join(f"X-{n}: {'a' * 100}\r\n" for n in range(MAX_HEAD // 100)))
    answer = await send_raw(master.acceptor.port, big.encode())
    assert answer.startswith(b"HTTP/1.1 431 ")


async def test_a_truncated_head_then_silence_is_cut_at_the_open_timeout(
    master_and_bystander: tuple[Master, ClientConnection],
) -> None:
    master, bystander = master_and_bystander
    started = time.monotonic()
    answer = await send_raw(master.acceptor.port, handshake().encode()[:40], OPEN_TIMEOUT + 5)
    elapsed = time.monotonic() - started
    assert answer == b""
    assert OPEN_TIMEOUT * 0.8 <= elapsed < OPEN_TIMEOUT + 5, elapsed
    await ping_ok(bystander)


async def test_many_silent_connections_hold_nothing_of_the_workers(
    master_and_bystander: tuple[Master, ClientConnection],
) -> None:
    master, bystander = master_and_bystander
    writers = []
    for _ in range(200):  # connect and say nothing: the kernel keeps them (TCP_DEFER_ACCEPT)
        _, writer = await asyncio.open_connection("127.0.0.1", master.acceptor.port)
        writers.append(writer)
    await asyncio.sleep(0.3)
    assert master.acceptor.gate.active == 0  # none reached the master's reading
    await ping_ok(bystander)
    for writer in writers:
        with contextlib.suppress(OSError):
            writer.transport.abort()
