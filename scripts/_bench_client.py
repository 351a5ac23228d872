"""``scripts/bench --client SCENARIO``: the load generator, one process per run.

It connects (its held connections, for throughput and round trips), says
``ready``, runs its scenario on ``go`` and prints its ``result`` as JSON,
then tears down on ``end``, each a line on stdin or stdout;
:class:`_bench_procs.ClientProc` is the other end.
"""

from __future__ import annotations

import asyncio
import json
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any, Literal

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus, WebSocketException

__all__ = ["ClientArgs", "Load", "StdinLines", "client_main"]


class StdinLines:
    """stdin lines on the event loop, read by a daemon thread (never blocks the exit)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.lines: asyncio.Queue[str] = asyncio.Queue()

        def read() -> None:
            for line in sys.stdin:
                loop.call_soon_threadsafe(self.lines.put_nowait, line.strip())
            loop.call_soon_threadsafe(self.lines.put_nowait, "")

        threading.Thread(target=read, name="stdin", daemon=True).start()

    async def next(self) -> str:
        return await self.lines.get()


@dataclass
class ClientArgs:
    """What one client process does."""

    scenario: str
    url: str
    compression: str
    concurrency: int
    duration: float
    samples: int
    connections: int
    tag: str


def _emit(kind: str, payload: Any = None) -> None:
    print(kind if payload is None else f"{kind} {json.dumps(payload)}", flush=True)


class Load:
    """One client process's connections and error counts."""

    def __init__(self, spec: ClientArgs) -> None:
        self.spec = spec
        self.compression: Literal["deflate"] | None = (
            "deflate" if spec.compression == "deflate" else None
        )
        self.errors: Counter[str] = Counter()
        self.held: list[ClientConnection] = []

    async def open(self, user: str) -> ClientConnection:
        """Connect as ``user`` and read the welcome."""
        ws = await connect(
            f"{self.spec.url}?user_id={user}",
            compression=self.compression,
            ping_interval=None,
            open_timeout=15,
            close_timeout=5,
            max_size=None,
        )
        await asyncio.wait_for(ws.recv(), 15)
        return ws

    def count(self, error: BaseException) -> None:
        if isinstance(error, InvalidStatus):
            self.errors[f"http_{error.response.status_code}"] += 1
        else:
            self.errors[type(error).__name__] += 1

    async def setup(self) -> None:
        if self.spec.scenario in ("throughput", "rtt"):
            users = [f"{self.spec.tag}-u{i // 10}" for i in range(self.spec.concurrency)]
            self.held = list(await asyncio.gather(*(self.open(user) for user in users)))

    async def run(self) -> dict[str, Any]:
        runs = {
            "churn": self.churn,
            "throughput": self.throughput,
            "rtt": self.rtt,
            "memory": self.memory,
        }
        started = time.monotonic()
        result = await runs[self.spec.scenario]()
        result["elapsed"] = time.monotonic() - started
        result["errors"] = dict(self.errors)
        return result

    async def churn(self) -> dict[str, Any]:
        latencies: list[float] = []
        deadline = time.monotonic() + self.spec.duration

        async def loop(user: str) -> None:
            while time.monotonic() < deadline:
                t0 = time.perf_counter()
                try:
                    async with connect(
                        f"{self.spec.url}?user_id={user}",
                        compression=self.compression,
                        ping_interval=None,
                        open_timeout=15,
                        close_timeout=5,
                    ) as ws:
                        await asyncio.wait_for(ws.recv(), 15)
                        latency = time.perf_counter() - t0
                        await ws.send('{"type": "echo", "data": "churn"}')
                        await asyncio.wait_for(ws.recv(), 15)
                    latencies.append(latency)
                except (OSError, TimeoutError, WebSocketException) as error:
                    self.count(error)
                    await asyncio.sleep(0.01)

        await asyncio.gather(*(loop(f"{self.spec.tag}-c{i}") for i in range(self.spec.concurrency)))
        return {"cycles": len(latencies), "latencies": latencies}

    async def throughput(self) -> dict[str, Any]:
        deadline = time.monotonic() + self.spec.duration
        totals: list[int] = []

        async def pingpong(ws: ClientConnection) -> None:
            sent = 0
            try:
                while time.monotonic() < deadline:
                    await ws.send(f'{{"type": "echo", "data": {sent}}}')
                    reply = json.loads(await asyncio.wait_for(ws.recv(), 15))
                    if reply.get("data") != sent:
                        self.errors["bad_reply"] += 1
                    sent += 1
            except (OSError, TimeoutError, WebSocketException) as error:
                self.count(error)
            totals.append(sent)

        await asyncio.gather(*(pingpong(ws) for ws in self.held))
        return {"messages": sum(totals)}

    async def rtt(self) -> dict[str, Any]:
        (ws,) = self.held
        rtts: list[float] = []
        for sample in range(self.spec.samples):
            t0 = time.perf_counter()
            await ws.send(f'{{"type": "echo", "data": {sample}}}')
            await asyncio.wait_for(ws.recv(), 15)
            rtts.append(time.perf_counter() - t0)
            await asyncio.sleep(0.005)
        return {"rtts": rtts}

    async def memory(self) -> dict[str, Any]:
        gate = asyncio.Semaphore(50)

        async def idle(index: int) -> ClientConnection | None:
            async with gate:
                try:
                    return await self.open(f"{self.spec.tag}-m{index // 20}")
                except (OSError, TimeoutError, WebSocketException) as error:
                    self.count(error)
                    return None

        opened = await asyncio.gather(*(idle(i) for i in range(self.spec.connections)))
        self.held = [ws for ws in opened if ws is not None]
        await asyncio.sleep(1.5)  # let a keepalive round go by before the reading
        return {"opened": len(self.held)}

    async def teardown(self) -> None:
        await asyncio.gather(*(ws.close() for ws in self.held), return_exceptions=True)


async def client_main(spec: ClientArgs) -> None:
    """ready, wait for go, run, print the result, wait for end, tear down."""
    stdin = StdinLines(asyncio.get_running_loop())
    load = Load(spec)
    await load.setup()
    _emit("ready")
    if await stdin.next() == "go":
        _emit("result", await load.run())
        await stdin.next()  # "end" (or EOF: the parent is gone)
    await load.teardown()
