"""``scripts/loadtest --client-proc``: one client process and the connections it makes.

A client process owns a share of the users (:class:`ClientSpec`): it opens
connections at its share of the churn rate, each for a random lifetime,
exchanges echo and ping frames on each, sometimes resumes one of its
users' threads, and prints a ``stats`` line (counts, close codes, connect
latencies) every 0.5 s. :class:`UserState` is what it knows of each user,
so that a 429 is told apart as expected (at quota) or not.
:class:`_loadtest_procs.Clients` is the parent's side.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

from _toolkit import raise_fd_limit  # scripts/ is on sys.path when run as a script
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException

__all__ = ["RECENT_CLOSE", "ClientLoad", "ClientSpec", "UserState", "client_process"]

RECENT_CLOSE = 1.0  # a slot closed this recently may not be free yet: a 429 then is expected


@dataclass
class UserState:
    """What one client process knows about one of its users."""

    open: int = 0
    pending: int = 0
    closes: deque[float] = field(default_factory=lambda: deque(maxlen=64))
    threads: deque[str] = field(default_factory=lambda: deque(maxlen=8))

    def held(self) -> int:
        """Slots this user may hold now, by this process's count (open, opening, just closed)."""
        now = time.monotonic()
        recent = sum(1 for closed in self.closes if now - closed < RECENT_CLOSE)
        return self.open + self.pending + recent


@dataclass
class ClientSpec:
    url: str
    users: list[str]
    per_user: int
    rate: float
    lifetime: float
    grace_until: float  # wall clock: a 429 before it is expected (a predecessor's slots)
    mean_life: float
    resume_pct: float
    seed: int


class ClientLoad:
    """The connections of one client process."""

    def __init__(self, spec: ClientSpec) -> None:
        self.spec = spec
        self.rng = random.Random(spec.seed)
        self.users = {user: UserState() for user in spec.users}
        self.counts: Counter[str] = Counter()
        self.codes: Counter[str] = Counter()
        self.latencies: list[float] = []
        self.stop = asyncio.Event()

    def emit(self) -> None:
        """One ``stats`` line: counts and latencies since the last one."""
        line = {"c": dict(self.counts), "codes": dict(self.codes), "lat": self.latencies}
        print("stats " + json.dumps(line), flush=True)
        self.counts, self.codes, self.latencies = Counter(), Counter(), []

    async def run(self) -> None:
        deadline = time.monotonic() + self.spec.lifetime
        cap = max(8, self.spec.per_user * len(self.users) * 3)
        tasks: set[asyncio.Task[None]] = set()
        emitter = asyncio.create_task(self._emit_every(0.5))
        while (now := time.monotonic()) < deadline - 0.3:
            if len(tasks) < cap:
                life = min(self.rng.uniform(0.2, 2 * self.spec.mean_life), deadline - now - 0.2)
                task = asyncio.create_task(self.connection(self.rng.choice(self.spec.users), life))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            gap = min(5.0, self.rng.expovariate(self.spec.rate))
            await asyncio.sleep(max(0.0, min(gap, deadline - time.monotonic())))
        self.stop.set()
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=8)
            for task in late:
                task.cancel()
        emitter.cancel()
        self.emit()

    async def _emit_every(self, period: float) -> None:
        while True:
            await asyncio.sleep(period)
            self.emit()

    async def connection(self, user: str, life: float) -> None:
        state = self.users[user]
        thread = None
        if state.threads and self.rng.random() * 100 < self.spec.resume_pct:
            thread = self.rng.choice(list(state.threads))
        url = f"{self.spec.url}?user_id={user}" + (f"&thread_id={thread}" if thread else "")
        state.pending += 1
        started = time.perf_counter()
        try:
            ws = await connect(url, ping_interval=None, open_timeout=10, close_timeout=3)
        except InvalidStatus as error:
            state.pending -= 1
            status = error.response.status_code
            if status == 429:
                expected = state.held() >= self.spec.per_user or time.time() < self.spec.grace_until
                self.counts["rejected_at_quota" if expected else "rejected_below_quota"] += 1
            else:
                self.counts[f"error_http_{status}"] += 1
            return
        except (OSError, TimeoutError, WebSocketException) as error:
            state.pending -= 1
            self.counts[f"error_{type(error).__name__}"] += 1
            return
        state.pending -= 1
        state.open += 1
        try:
            await self._serve(ws, user, thread, started, life)
        finally:
            state.open -= 1
            state.closes.append(time.monotonic())
            with contextlib.suppress(OSError, WebSocketException):
                await ws.close()

    async def _serve(
        self, ws: ClientConnection, user: str, thread: str | None, started: float, life: float
    ) -> None:
        try:
            welcome = json.loads(await asyncio.wait_for(ws.recv(), 10))
            self.latencies.append(time.perf_counter() - started)
            self.counts["admitted"] += 1
            wrong_user = welcome.get("type") != "welcome" or welcome.get("user_id") != user
            if wrong_user or (thread is not None and welcome.get("thread_id") != thread):
                self.counts["welcome_mismatch"] += 1
            if isinstance(welcome.get("thread_id"), str):
                self.users[user].threads.append(welcome["thread_id"])
            end = time.monotonic() + life
            sequence = 0
            while time.monotonic() < end and not self.stop.is_set():
                sequence += 1
                if sequence % 5 == 0:
                    await ws.send('{"type": "ping"}')
                    expected: dict[str, Any] = {"type": "pong"}
                else:
                    data = f"{user}:{sequence}"
                    await ws.send(json.dumps({"type": "echo", "data": data}))
                    expected = {"type": "echo", "data": data}
                reply = json.loads(await asyncio.wait_for(ws.recv(), 10))
                self.counts["frames"] += 1
                if reply != expected:
                    self.counts["echo_mismatch"] += 1
                pause = min(self.rng.uniform(0.1, 0.5), end - time.monotonic())
                if pause > 0:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self.stop.wait(), pause)
        except ConnectionClosed as closed:
            self.codes[str(closed.rcvd.code if closed.rcvd else 1006)] += 1
        except (OSError, TimeoutError, WebSocketException, ValueError) as error:
            self.counts[f"error_{type(error).__name__}"] += 1


async def client_process(spec: ClientSpec) -> None:
    raise_fd_limit()
    load = ClientLoad(spec)
    await asyncio.wait_for(load.run(), spec.lifetime + 30)
