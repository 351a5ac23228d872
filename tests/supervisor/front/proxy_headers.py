"""PROXY protocol headers built byte by byte, as HAProxy sends them (for the front's tests)."""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Sequence

from supervisor.front.proxy import PROXY_V2_SIGNATURE, crc32c

__all__ = ["upgrade_request", "v1", "v2"]

CRC32C = 0x03


def upgrade_request(port: int) -> bytes:
    """A WebSocket upgrade request for ``/ws`` on ``port``."""
    return (
        f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n"
    ).encode()


def v1(source: tuple[str, int] | None, destination: tuple[str, int] | None) -> bytes:
    """A v1 line (``PROXY UNKNOWN`` without addresses)."""
    if source is None or destination is None:
        return b"PROXY UNKNOWN\r\n"
    family = "TCP4" if ipaddress.ip_address(source[0]).version == 4 else "TCP6"
    return f"PROXY {family} {source[0]} {destination[0]} {source[1]} {destination[1]}\r\n".encode()


def v2(
    source: tuple[str, int] | str | None,
    destination: tuple[str, int] | str | None,
    *,
    local: bool = False,
    tlvs: Sequence[tuple[int, bytes]] = (),
    crc: bool = False,
) -> bytes:
    """A v2 header: TCP over IPv4/IPv6 for tuples, UNIX for paths, UNSPEC for None."""
    if source is None or destination is None:
        family, block = 0x00, b""
    elif isinstance(source, str) and isinstance(destination, str):
        family = 0x31
        block = source.encode().ljust(108, b"\x00") + destination.encode().ljust(108, b"\x00")
    else:
        assert isinstance(source, tuple) and isinstance(destination, tuple)
        src, dst = ipaddress.ip_address(source[0]), ipaddress.ip_address(destination[0])
        family = 0x11 if src.version == 4 else 0x21
        block = src.packed + dst.packed + struct.pack("!HH", source[1], destination[1])
    extra = b"".join(bytes([kind]) + struct.pack("!H", len(value)) + value for kind, value in tlvs)
    if crc:
        extra += bytes([CRC32C]) + struct.pack("!H", 4) + b"\x00" * 4
    body = block + extra
    command = 0x20 | (0x0 if local else 0x1)
    whole = PROXY_V2_SIGNATURE + bytes([command, family]) + struct.pack("!H", len(body)) + body
    if crc:
        whole = whole[:-4] + struct.pack("!I", crc32c(whole))
    return whole
