"""Raw TCP against the public port: malformed handshakes and malformed frames.

The daemon answers with an HTTP error or closes the connection, never
crashes, never keeps a slot for a broken client, and a well-behaved user
connected before keeps being served.
"""

from __future__ import annotations

import asyncio
import base64
import os
import struct
import time
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from websockets.asyncio.client import ClientConnection

from supervisor.daemon import Daemon
from tests.helpers import actor_threads
from tests.hostile import (
    EOF_WAIT,
    all_slots_free,
    close_code,
    frame,
    handshake,
    open_client,
    open_raw,
    ping_ok,
    read_to_eof,
    wait_for,
)
from tests.integration.harness import running_daemon, ws_url

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(60)]

OPEN_TIMEOUT = 1.0
OVERRIDES = {"limits": {"open_timeout": OPEN_TIMEOUT}, "server": {"admission_timeout": 0.5}}


@pytest_asyncio.fixture
async def daemon_and_bystander() -> AsyncIterator[tuple[Daemon, ClientConnection]]:
    before = len(actor_threads())
    async with running_daemon(OVERRIDES) as daemon:
        bystander, _ = await open_client(ws_url(daemon, user="bob"))
        yield daemon, bystander
        await ping_ok(bystander)
        await bystander.close()
        await all_slots_free(daemon)
    deadline = time.monotonic() + 10
    while len(actor_threads()) > before and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    assert len(actor_threads()) <= before, [t.name for t in actor_threads()]


async def send_raw(port: int, data: bytes, timeout: float = EOF_WAIT) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        return await read_to_eof(reader, timeout)
    finally:
        writer.transport.abort()


HANDSHAKES: dict[str, bytes] = {
    "garbage line": b"\x00\xffgarbage \x01\x02\r\n\r\n",
    "not http at all": os.urandom(64) + b"\r\n\r\n",
    "HTTP/1.0": handshake().replace("HTTP/1.1", "HTTP/1.0").encode(),
    "missing Upgrade": handshake().replace("Upgrade: websocket\r\n", "").encode(),
    "missing Connection": handshake().replace("Connection: Upgrade\r\n", "").encode(),
    "bad Sec-WebSocket-Key": handshake(key="not-base64!").encode(),
    "short Sec-WebSocket-Key": handshake(key=base64.b64encode(b"short").decode()).encode(),
    "two Sec-WebSocket-Keys": handshake(extra="Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA==\r\n")
    .replace("\r\n\r\n", "\r\n")
    .encode()
    + b"\r\n",
    "unsupported version": handshake().replace("Version: 13", "Version: 8").encode(),
    "header over 8 KiB": handshake(extra=f"X-Big: {'a' * 9000}\r\n").encode(),
    "too many headers": handshake(extra="".join(f"X-{n}: v\r\n" for n in range(300))).encode(),
    "head over 16 KiB": handshake(
        extra="".join(f"X-{n}: {'a' * 900}\r\n" for n in range(20))
    ).encode(),
    "POST with a body": b"POST /ws HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nabcd",
    "path over 8 KiB": handshake(path="/ws?user_id=" + "a" * 9000).encode(),
    "user id with a colon": handshake(path="/ws?user_id=alice:thread").encode(),
    "forged thread id": handshake(path="/ws?user_id=mallory&thread_id=a%3Ab").encode(),
}


@pytest.mark.parametrize("name", list(HANDSHAKES))
async def test_a_malformed_handshake_gets_an_http_error_or_a_close_and_no_slot(
    daemon_and_bystander: tuple[Daemon, ClientConnection], name: str
) -> None:
    daemon, bystander = daemon_and_bystander
    answer = await send_raw(daemon.front.port, HANDSHAKES[name])
    assert answer == b"" or answer.startswith((b"HTTP/1.1 4", b"HTTP/1.1 5")), answer[:200]
    assert not answer.startswith(b"HTTP/1.1 101")
    await wait_for(lambda: daemon.tree.ledger.total() == 1, what="only the bystander's slot")
    await ping_ok(bystander)


async def test_a_truncated_handshake_then_silence_is_cut_at_the_open_timeout(
    daemon_and_bystander: tuple[Daemon, ClientConnection],
) -> None:
    daemon, bystander = daemon_and_bystander
    timeout = daemon.config.limits.open_timeout
    started = time.monotonic()
    answer = await send_raw(daemon.front.port, handshake().encode()[:40], timeout + 3)
    elapsed = time.monotonic() - started
    assert timeout * 0.8 <= elapsed < timeout + 3, elapsed
    assert not answer.startswith(b"HTTP/1.1 101")
    await ping_ok(bystander)
    assert daemon.tree.ledger.total() == 1


async def open_daemon_raw(daemon: Daemon) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A WebSocket connection to ``daemon`` upgraded by hand, its welcome frame read."""
    return await open_raw(daemon.front.port)


FRAMES: dict[str, tuple[bytes, set[int | None]]] = {
    "unmasked client frame": (frame(0x1, b'{"type":"ping"}', mask=False), {1002}),
    "reserved bits set": (frame(0x1, b'{"type":"ping"}', first=0xF1), {1002}),
    "RSV1 without deflate": (frame(0x1, b'{"type":"ping"}', first=0xC1), {1002}),
    "reserved opcode 0x3": (frame(0x3, b"x"), {1002}),
    "reserved control opcode 0xB": (frame(0xB, b"x"), {1002}),
    "continuation without a start": (frame(0x0, b"x"), {1002}),
    "fragmented ping": (frame(0x9, b"x", first=0x09), {1002}),
    "control frame over 125 bytes": (frame(0x9, b"x" * 200), {1002}),
    "length of 2**63": (b"\x81\xff" + struct.pack("!Q", 1 << 63) + os.urandom(4), {1002, 1009}),
    "length of 2**63 - 1": (
        b"\x81\xff" + struct.pack("!Q", (1 << 63) - 1) + os.urandom(4),
        {1009},
    ),
    "invalid UTF-8 in a text frame": (frame(0x1, b'{"type":"\xff\xfe"}'), {1007}),
    "lone surrogate in a text frame": (
        frame(0x1, "\ud800".encode("utf-8", "surrogatepass")),
        {1007},
    ),
    "close code 999": (frame(0x8, struct.pack("!H", 999)), {1002}),
    "close code 1005 on the wire": (frame(0x8, struct.pack("!H", 1005)), {1002}),
    "close code 5000": (frame(0x8, struct.pack("!H", 5000)), {1002}),
    "close with a 1-byte payload": (frame(0x8, b"\x03"), {1002}),
    "close reason not UTF-8": (frame(0x8, struct.pack("!H", 1000) + b"\xff"), {1007, 1002}),
    "truncated frame then silence": (frame(0x1, b"x" * 100)[:20], {None}),
    "4097 fragments of one message": (
        frame(0x1, b"[", first=0x01)  # a text frame without FIN, then 4096 continuations
        + frame(0x0, b" ", first=0x00) * 4095
        + frame(0x0, b"]"),
        {1009},
    ),
}


@pytest.mark.parametrize("name", list(FRAMES))
async def test_a_malformed_frame_closes_only_that_connection_and_frees_its_slot(
    daemon_and_bystander: tuple[Daemon, ClientConnection], name: str
) -> None:
    daemon, bystander = daemon_and_bystander
    data, codes = FRAMES[name]
    reader, writer = await open_daemon_raw(daemon)
    try:
        assert daemon.tree.ledger.total() == 2
        writer.write(data)
        answer = await read_to_eof(reader)
    finally:
        writer.transport.abort()
    assert close_code(answer) in codes, (name, answer[:100])
    await wait_for(lambda: daemon.tree.ledger.total() == 1, what="the broken client's slot freed")
    await ping_ok(bystander)
