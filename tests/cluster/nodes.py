"""Several real ``ws-supervisor serve`` processes sharing one redis-server, and their clients.

Everything that blocks (HTTP to an admin listener, Redis, a subprocess) runs
on a thread through :func:`until` or :func:`off`, never on the test's event
loop: the daemons ping every client each second, and a client whose loop is
stuck does not answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.protocol import State

from tests.cluster.redis_server import RedisServer
from tests.cluster.sentinels import SentinelSet
from tests.integration.harness import ROOT, DaemonProcess

__all__ = [
    "LEASE_TTL",
    "QUOTA",
    "RENEW_INTERVAL",
    "Clients",
    "Node",
    "close_code",
    "echoes",
    "lease_expiry",
    "live_slots",
    "off",
    "running_nodes",
    "slots_key",
    "until",
]

T = TypeVar("T")

CI_CONFIG = ROOT / "config" / "ci.toml"
QUOTA = 5  # [quota] max_managers_per_user of the ci profile
LEASE_TTL = 3.0  # [redis] lease_ttl of the ci profile
RENEW_INTERVAL = 1.0  # [redis] renew_interval of the ci profile
# Each node gets these on top of the ci profile. The Redis call timeout and the client
# ping timeout are raised from ci's 0.25 s and 1 s: these tests share 2 cores between three
# daemons, a redis-server and the clients, and a call or pong late by a scheduling hiccup
# would turn into a ledger outage or a dropped client that no test here is about.
CLUSTER_ENV = {
    "WS_SUPERVISOR_QUOTA_BACKEND": "redis",
    "WS_SUPERVISOR_REDIS_TIMEOUT": "1.0",
    "WS_SUPERVISOR_TIMEOUTS_PING_TIMEOUT": "5.0",
}


class Node(DaemonProcess):
    """One daemon of the cluster, named ``node_id``; its log is kept when it stops."""

    def __init__(self, node_id: str, redis_url: str, env: Mapping[str, str]) -> None:
        self.node_id = node_id
        self.log = ""
        super().__init__(
            CI_CONFIG,
            env={
                **CLUSTER_ENV,
                "WS_SUPERVISOR_REDIS_URL": redis_url,
                "WS_SUPERVISOR_SERVER_NODE_ID": node_id,
                **env,
            },
        )

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        """SIGKILL (if still running) and keep what it logged."""
        if self.alive:
            self.proc.kill()
            self.proc.wait(10)
        if not self._log.closed:
            self.log = self.output()
        self.kill()

    def post(self, path: str, payload: Any, timeout: float = 10.0) -> tuple[int, Any]:
        """POST ``payload`` as JSON to an admin path: (status, parsed JSON answer)."""
        request = urllib.request.Request(
            self.admin + path,
            data=json.dumps(payload).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())

    def ready_is(self, status: int) -> bool:
        """True if ``/readyz`` answers ``status`` (200 ready, 503 not)."""
        return self.get("/readyz")[0] == status

    def metric(self, name: str) -> float:
        """One unlabelled sample of ``/metrics``."""
        status, text = self.get("/metrics")
        assert status == 200, text
        for line in str(text).splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        raise AssertionError(f"{name} not in /metrics of {self.node_id}")

    def user_state(self, user_id: str) -> dict[str, Any] | None:
        """This node's ``/debug/state`` entry for the user (None: no supervisor)."""
        status, state = self.get("/debug/state")
        assert status == 200, state
        found = [user for user in state["users"] if user["user_id"] == user_id]
        return found[0] if found else None

    def cluster_slots(self, user_id: str) -> list[dict[str, Any]]:
        """The user's live slots as this node reads them in Redis (``/debug/cluster``)."""
        status, view = self.get("/debug/cluster")
        assert status == 200, view
        assert view["node_id"] == self.node_id
        for user in view["users"]:
            if user["user_id"] == user_id:
                slots: list[dict[str, Any]] = user["slots"]
                return slots
        return []


@contextlib.contextmanager
def running_nodes(
    server: RedisServer | SentinelSet, count: int = 3, env: Mapping[str, str] | None = None
) -> Iterator[list[Node]]:
    """``count`` nodes (``node-a``, ``node-b``, ...) on ``server`` (or a Sentinel set), ready.

    Every node is killed on exit.

    A node that logged a traceback (a crashed thread, a failed handler) fails the
    block. When the block fails, every node's log is printed (pytest shows it).
    """
    nodes: list[Node] = []
    try:
        for letter in "abcdefgh"[:count]:
            nodes.append(Node(f"node-{letter}", server.url, env or {}))
        for node in nodes:
            node.wait_ready()
        yield nodes
        for node in nodes:
            node.stop()
            assert "Traceback" not in node.log, f"{node.node_id} logged a traceback"
    except BaseException:
        for node in nodes:
            node.stop()
            print(f"----- log of {node.node_id} (exit {node.proc.returncode}) -----\n{node.log}")
        raise
    finally:
        for node in nodes:
            node.stop()


# --- Redis, read directly ----------------------------------------------------------------


def slots_key(user_id: str) -> str:
    """The sorted set of the user's leases (``[redis] key_prefix`` is ``wss`` in ci)."""
    return "wss:{" + user_id + "}:slots"


def live_slots(server: RedisServer, user_id: str) -> dict[str, tuple[str, str]]:
    """The user's unexpired slots in Redis: isolation key -> (node_id, websocket_id)."""
    client = server.client()
    try:
        seconds, micros = client.time()
        now_ms = seconds * 1000 + micros // 1000
        raw: Any = client.zrangebyscore(slots_key(user_id), f"({now_ms}", "+inf")
        keys = [key.decode() for key in raw]
        holders = "wss:{" + user_id + "}:holders"
        records: Any = client.hmget(holders, keys) if keys else []
    finally:
        client.close()
    found = {}
    for key, record in zip(keys, records, strict=True):
        assert record is not None, f"slot {key} of {user_id} has no holder record"
        node, websocket_id, _ = record.decode().split("\t")
        found[key] = (node, websocket_id)
    return found


def lease_expiry(server: RedisServer, user_id: str, key: str) -> float:
    """When the slot's lease runs out (ms, Redis clock); it must be in Redis."""
    client = server.client()
    try:
        score = client.zscore(slots_key(user_id), key)
    finally:
        client.close()
    assert score is not None, f"no slot {key} for {user_id}"
    return score


# --- waiting without blocking the loop -------------------------------------------------------


async def off(function: Callable[..., T], *args: Any) -> T:
    """Run a blocking call on a thread."""
    return await asyncio.to_thread(function, *args)


async def until(
    predicate: Callable[[], bool], timeout: float, what: str, interval: float = 0.05
) -> float:
    """Poll ``predicate`` (on a thread) until true; the seconds it took. Fails after ``timeout``."""
    started = time.monotonic()
    while not await off(predicate):
        if time.monotonic() - started > timeout:
            raise AssertionError(f"not within {timeout:g}s: {what}")
        await asyncio.sleep(interval)
    return time.monotonic() - started


# --- clients ------------------------------------------------------------------------------------


class Clients:
    """The test's WebSocket clients; every one still open is closed on exit."""

    def __init__(self) -> None:
        self.opened: list[ClientConnection] = []

    async def __aenter__(self) -> Clients:
        return self

    async def __aexit__(self, *_: object) -> None:
        await asyncio.gather(*(ws.close() for ws in self.opened), return_exceptions=True)

    async def open(self, url: str) -> tuple[ClientConnection, dict[str, Any]]:
        """A client admitted by the daemon, and its welcome frame."""
        ws = await connect(url, open_timeout=10, close_timeout=2)
        self.opened.append(ws)
        welcome = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert welcome["type"] == "welcome", welcome
        return ws, welcome

    async def attempt(self, url: str) -> tuple[ClientConnection, dict[str, Any]] | int:
        """The client and its welcome if admitted, else the HTTP status of the refusal."""
        try:
            return await self.open(url)
        except InvalidStatus as refusal:
            return refusal.response.status_code

    async def refusal(self, url: str) -> int:
        """The HTTP status of a handshake that must be refused."""
        answer = await self.attempt(url)
        assert isinstance(answer, int), f"admitted, expected a refusal: {answer[1]}"
        return answer

    def open_now(self) -> list[ClientConnection]:
        return [ws for ws in self.opened if ws.state is State.OPEN]


async def echoes(ws: ClientConnection, data: str) -> None:
    """The connection still carries frames both ways (the ci app echoes)."""
    await ws.send(json.dumps({"type": "echo", "data": data}))
    reply = json.loads(await asyncio.wait_for(ws.recv(), 10))
    assert reply == {"type": "echo", "data": data}, reply


async def close_code(ws: ClientConnection, timeout: float) -> int | None:
    """The code the daemon closed ``ws`` with, waiting up to ``timeout`` seconds."""
    try:
        async with asyncio.timeout(timeout):
            while True:
                await ws.recv()
    except ConnectionClosed:
        return ws.close_code
    except TimeoutError:
        raise AssertionError(f"still open after {timeout:g}s") from None
