"""``scripts/bench --serve-bare``: the bare websockets server the daemon is measured against.

It speaks the daemon's JSON protocol (a welcome frame on connect, then
``echo`` and ``ping`` answered) with the ci profile's keepalive and frame
size limit, and the compression it is told; nothing else.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import signal
import tomllib
from urllib.parse import parse_qsl, urlsplit

from _toolkit import HOST, ROOT  # scripts/ is on sys.path when run as a script
from websockets.exceptions import ConnectionClosed

__all__ = ["bare_server", "keepalive_settings"]


def keepalive_settings() -> tuple[float, float, int]:
    """(ping_interval, ping_timeout, max_message_size) of the ci profile."""
    try:
        with (ROOT / "config" / "ci.toml").open("rb") as file:
            data = tomllib.load(file)
        timeouts, server = data["timeouts"], data["server"]
        return (
            float(timeouts["ping_interval"]),
            float(timeouts["ping_timeout"]),
            int(server["max_message_size"]),
        )
    except (OSError, KeyError, ValueError, tomllib.TOMLDecodeError):
        return 1.0, 1.0, 1 << 20


_PONG = json.dumps({"type": "pong"})


def _error(code: str, message: str) -> str:
    return json.dumps({"type": "error", "code": code, "message": message})


async def bare_server(
    port: int, compression: str, max_seconds: float, ping_interval: float = 0.0
) -> None:
    """A plain websockets server speaking the daemon's JSON protocol, nothing else.

    Keepalive as the ci profile's, or every ``ping_interval`` seconds if given.
    """
    from websockets.asyncio.server import ServerConnection, serve  # noqa: PLC0415

    ping_interval_ci, ping_timeout, max_size = keepalive_settings()
    if ping_interval:
        ping_timeout = ping_interval
    else:
        ping_interval = ping_interval_ci

    async def handler(ws: ServerConnection) -> None:
        query = dict(parse_qsl(urlsplit(ws.request.path if ws.request else "").query))
        thread_id = query.get("thread_id") or f"thread_{secrets.token_hex(8)}"
        welcome = {
            "type": "welcome",
            "user_id": query.get("user_id", ""),
            "thread_id": thread_id,
            "run_id": f"run_{secrets.token_hex(8)}",
            "request_id": f"req_{secrets.token_hex(8)}",
            "websocket_id": f"ws_{secrets.token_hex(8)}",
        }
        try:
            await ws.send(json.dumps(welcome))
            async for message in ws:
                if not isinstance(message, str):
                    await ws.send(_error("binary_not_supported", "frames are JSON text"))
                    continue
                try:
                    frame = json.loads(message)
                except ValueError:
                    await ws.send(_error("invalid_json", "not valid JSON"))
                    continue
                kind = frame.get("type") if isinstance(frame, dict) else None
                if kind == "echo":
                    await ws.send(json.dumps({"type": "echo", "data": frame.get("data")}))
                elif kind == "ping":
                    await ws.send(_PONG)
                else:
                    await ws.send(_error("unknown_type", "unknown frame type"))
        except ConnectionClosed:
            pass

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with serve(
        handler,
        HOST,
        port,
        compression="deflate" if compression == "deflate" else None,
        ping_interval=ping_interval,
        ping_timeout=ping_timeout,
        max_size=max_size,
    ) as server:
        print(f"serving ws://{HOST}:{port}/ws", flush=True)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), max_seconds)
        server.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(server.wait_closed(), 5)
