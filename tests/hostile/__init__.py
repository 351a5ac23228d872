"""Hostile tests: a real daemon on loopback against clients that misbehave on purpose.

The helpers below are shared by the hostile test modules.
"""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import struct

from supervisor.daemon import Daemon
from tests.integration.harness import open_client, ping_ok, recv_json, wait_for

__all__ = [
    "EOF_WAIT",
    "MISMATCHES",
    "all_slots_free",
    "close_code",
    "close_frame",
    "frame",
    "handshake",
    "http_request",
    "open_client",
    "open_raw",
    "ping_ok",
    "read_to_eof",
    "recv_json",
    "wait_for",
]

EOF_WAIT = 5.0
"""Longest wait for the daemon to end a broken connection (keepalive: 1 s + 1 s in ci)."""


def handshake(path: str = "/ws?user_id=mallory", *, key: str | None = None, extra: str = "") -> str:
    """An opening handshake, written by hand (``extra`` adds header lines)."""
    key = key if key is not None else base64.b64encode(os.urandom(16)).decode()
    return (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
        f"Sec-WebSocket-Version: 13\r\n{extra}\r\n"
    )


def frame(
    opcode: int,
    payload: bytes,
    *,
    first: int | None = None,
    mask: bool = True,
    key: bytes | None = None,
) -> bytes:
    """One client frame (FIN set); ``first`` replaces the whole first byte.

    With a fixed ``key`` the masking runs at C speed (a flood builds fast).
    """
    head = bytes([first if first is not None else 0x80 | opcode])
    bit = 0x80 if mask else 0
    n = len(payload)
    if n < 126:
        head += bytes([bit | n])
    elif n < 1 << 16:
        head += bytes([bit | 126]) + struct.pack("!H", n)
    else:
        head += bytes([bit | 127]) + struct.pack("!Q", n)
    if not mask:
        return head + payload
    key = key if key is not None else os.urandom(4)
    stream = (key * (n // 4 + 1))[:n]
    masked = (int.from_bytes(payload, "big") ^ int.from_bytes(stream, "big")).to_bytes(n, "big")
    return head + key + (masked if n else b"")


async def read_to_eof(reader: asyncio.StreamReader, timeout: float = EOF_WAIT) -> bytes:
    """Everything the daemon sends until it closes; fail if it keeps the connection open."""
    chunks = []
    async with asyncio.timeout(timeout):
        try:
            while chunk := await reader.read(65536):
                chunks.append(chunk)
        except ConnectionResetError:  # an abort after what was read: the end all the same
            pass
    return b"".join(chunks)


def close_code(data: bytes) -> int | None:
    """The code of the server's close frame in ``data`` (server frames are unmasked)."""
    return close_frame(data)[0]


def close_frame(data: bytes) -> tuple[int | None, str]:
    """The code and reason of the server's close frame in ``data``; (None, "") without one."""
    while len(data) >= 2:
        opcode, n = data[0] & 0x0F, data[1] & 0x7F
        offset = 2
        if n == 126:
            n, offset = struct.unpack("!H", data[2:4])[0], 4
        elif n == 127:
            n, offset = struct.unpack("!Q", data[2:10])[0], 10
        payload, data = data[offset : offset + n], data[offset + n :]
        if opcode == 0x8:
            if len(payload) < 2:
                return 1005, ""
            return int(struct.unpack("!H", payload[:2])[0]), payload[2:].decode(errors="replace")
    return None, ""


async def open_raw(
    port: int,
    user: str = "mallory",
    *,
    extra: str = "",
    rcvbuf: int | None = None,
    welcome: bool = True,
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A WebSocket connection upgraded by hand, its welcome frame read (unless not ``welcome``).

    With ``rcvbuf`` the client's receive buffer is that small (a client that
    does not read fills it at once).
    """
    sock = socket.socket()
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    reader, writer = await asyncio.open_connection(sock=sock)
    writer.write(handshake(f"/ws?user_id={user}", extra=extra).encode())
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert head.startswith(b"HTTP/1.1 101"), head
    if not welcome:
        return reader, writer
    first = await asyncio.wait_for(reader.readexactly(2), 5)
    assert first[0] & 0x8F == 0x81  # the welcome: a final, unmasked text frame
    n = first[1] & 0x7F
    if n == 126:
        n = struct.unpack("!H", await reader.readexactly(2))[0]
    await asyncio.wait_for(reader.readexactly(n), 5)
    return reader, writer


MISMATCHES = "ws_supervisor_thread_id_mismatches_total"


async def all_slots_free(daemon: Daemon) -> None:
    """Every slot is freed and no close was ever filed under a foreign id."""
    await wait_for(lambda: daemon.tree.ledger.total() == 0, 5.0, "every slot free")
    assert daemon.metrics.value(MISMATCHES) == 0


async def http_request(
    port: int, method: str, path: str, body: bytes = b"", timeout: float = 5.0
) -> tuple[int, bytes]:
    """One raw HTTP/1.1 request on loopback: (status, body bytes); status 0 if none came.

    No ``Content-Length`` header is sent without a body (websockets closes
    without an answer on a request that has one).
    """
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        length = f"Content-Length: {len(body)}\r\n" if body else ""
        writer.write(f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{length}\r\n".encode() + body)
        raw = await asyncio.wait_for(reader.read(), timeout)
    finally:
        writer.close()
        await writer.wait_closed()
    if not raw:
        return 0, b""
    status_line, _, rest = raw.partition(b"\r\n")
    return int(status_line.split()[1]), rest.partition(b"\r\n\r\n")[2]
