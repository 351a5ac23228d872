"""A client process that churns distinct users: each connects once, is welcomed, closes cleanly.

Usage: python churn_client.py PORT PREFIX COUNT. Raw sockets (asyncio streams), 64 at a
time; prints one JSON line, ``{"ok": n, "failed": {...}, "seconds": s}``. Each connection
gives up after 20 s, so the process ends by itself.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import sys
import time

CLOSE = b"\x88\x82\x00\x00\x00\x00\x03\xe8"  # a masked close frame, 1000 (a zero mask)
CONCURRENCY = 64


async def one(port: int, user: str) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            f"GET /ws?user_id={user} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        head = await reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 101"):
            raise ConnectionError(head.split(b"\r\n", 1)[0].decode(errors="replace"))
        first = await reader.readexactly(2)  # the welcome frame
        size = first[1] & 0x7F
        if size == 126:
            size = int.from_bytes(await reader.readexactly(2), "big")
        await reader.readexactly(size)
        writer.write(CLOSE)
        await reader.read()  # the server's close frame, then the end of the stream
    finally:
        writer.close()


async def churn(port: int, prefix: str, count: int) -> dict[str, object]:
    failed: dict[str, int] = {}
    gate = asyncio.Semaphore(CONCURRENCY)

    async def guarded(n: int) -> bool:
        async with gate:
            try:
                await asyncio.wait_for(one(port, f"{prefix}{n}"), 20)
            except Exception as error:
                failed[str(error) or type(error).__name__] = failed.get(str(error), 0) + 1
                return False
            return True

    started = time.monotonic()
    results = await asyncio.gather(*(guarded(n) for n in range(count)))
    return {"ok": sum(results), "failed": failed, "seconds": time.monotonic() - started}


if __name__ == "__main__":
    port, prefix, count = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    print(json.dumps(asyncio.run(churn(port, prefix, count))), flush=True)
