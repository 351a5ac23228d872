"""Hostile tests: a real daemon on loopback against clients that misbehave on purpose.

The helpers below are shared by the hostile test modules.
"""

from __future__ import annotations

import asyncio

from supervisor.daemon import Daemon
from tests.integration.harness import open_client, ping_ok, recv_json, wait_for

__all__ = [
    "MISMATCHES",
    "all_slots_free",
    "http_request",
    "open_client",
    "ping_ok",
    "recv_json",
    "wait_for",
]

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
        writer.write(f"{method} {path} HTTP/1.1\r\nHost: x\r\n{length}\r\n".encode() + body)
        raw = await asyncio.wait_for(reader.read(), timeout)
    finally:
        writer.close()
        await writer.wait_closed()
    if not raw:
        return 0, b""
    status_line, _, rest = raw.partition(b"\r\n")
    return int(status_line.split()[1]), rest.partition(b"\r\n\r\n")[2]
