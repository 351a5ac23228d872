"""A client process for kill and freeze tests: opens N connections, says ready, waits.

Usage: python client_proc.py URL N. It exits by itself after 60 s at the most.
"""

from __future__ import annotations

import asyncio
import sys

from websockets.asyncio.client import connect


async def main(url: str, count: int) -> None:
    clients = [await connect(url, ping_interval=None) for _ in range(count)]
    for ws in clients:
        await ws.recv()  # the welcome
    print("ready", flush=True)
    await asyncio.sleep(60)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
