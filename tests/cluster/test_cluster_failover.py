"""Three daemons on a Sentinel-managed Redis; the master SIGKILLed while users churn (#25).

A master, a replica and three sentinels (Debian's redis-server; the master
is declared down after 500 ms) and three ``ws-supervisor serve`` processes
of the ci profile (quota 5, lease 3 s renewed every 1 s, retry every 0.2 s,
Redis calls time out after 1 s) whose ``[redis] url`` is the set's
``redis+sentinel://`` URL. Two users each hold two long-lived connections;
eight clients connect, echo once and close, over and over, on the three
nodes in turn, four per user, so that the users sit at their quota. The
master is SIGKILLed 3 s in; the churn goes on 10 s more. Each test prints
what it measured (``pytest -s``): docs/CLUSTER.md quotes it.
"""

from __future__ import annotations

import asyncio
import collections
import json
import time
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.cluster.nodes import (
    LEASE_TTL,
    QUOTA,
    RENEW_INTERVAL,
    Clients,
    Node,
    echoes,
    off,
    running_nodes,
    until,
)
from tests.cluster.sentinels import SentinelSet, running_sentinels

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(150)]

USERS = ("c0", "c1")
WORKERS = 8
KILL_AT = 3.0
AFTER = 10.0
REDIS_TIMEOUT = 1.0  # [redis] timeout of CLUSTER_ENV
RETRY_INTERVAL = 0.2  # [redis] retry_interval of the ci profile


class Churn:
    """The clients' side of the run: every handshake's outcome, and how many each user held."""

    def __init__(self, nodes: list[Node]) -> None:
        self.nodes = nodes
        self.started = time.monotonic()
        self.killed_at: float | None = None
        self.attempts: list[tuple[float, str, float]] = []  # (since start, outcome, seconds)
        self.open = collections.Counter[str]()
        self.most = collections.Counter[str]()
        self.over: list[float] = []  # when a user held more than the quota (since start)
        self.stop = asyncio.Event()

    def opened(self, user: str) -> None:
        self.open[user] += 1
        self.most[user] = max(self.most[user], self.open[user])
        if self.open[user] > QUOTA:
            self.over.append(time.monotonic() - self.started)

    async def worker(self, index: int) -> None:
        user, turn = USERS[index % len(USERS)], 0
        while not self.stop.is_set():
            node = self.nodes[(index + turn) % len(self.nodes)]
            began = time.monotonic()
            outcome = "101"
            try:
                ws = await connect(node.url(user, thread_id=f"w{index}n{turn}"), open_timeout=5)
            except InvalidStatus as refused:
                outcome = str(refused.response.status_code)
            except (OSError, TimeoutError) as error:
                outcome = type(error).__name__
            else:
                self.opened(user)
                try:
                    await asyncio.wait_for(ws.recv(), 5)
                    await echoes(ws, "x")
                except (ConnectionClosed, TimeoutError):
                    outcome = f"closed {ws.close_code}"
                finally:
                    self.open[user] -= 1  # before the close: never above what the nodes hold
                    await ws.close()
            self.attempts.append((began - self.started, outcome, time.monotonic() - began))
            turn += 1
            await asyncio.sleep(0.02)

    def around_the_kill(self) -> list[tuple[float, str, float]]:
        """Each attempt as (seconds since the kill, outcome, seconds it took)."""
        assert self.killed_at is not None
        offset = self.killed_at - self.started
        return [(at - offset, outcome, took) for at, outcome, took in self.attempts]


def slots_on_master(sentinels: SentinelSet) -> dict[str, int]:
    client = sentinels.master_client()
    try:
        found: dict[str, int] = {}
        for raw in client.scan_iter(match="wss:{*}:slots"):
            found[raw.decode()] = int(client.zcard(raw))
        return found
    finally:
        client.close()


def live_keys(sentinels: SentinelSet, user: str) -> set[str]:
    client = sentinels.master_client()
    try:
        now: Any = client.time()
        now_ms = now[0] * 1000 + now[1] // 1000
        raw: Any = client.zrangebyscore("wss:{" + user + "}:slots", f"({now_ms}", "+inf")
        return {key.decode() for key in raw}
    finally:
        client.close()


def report(policy: str, churn: Churn, failover: dict[str, float]) -> dict[str, Any]:
    """What happened to the handshakes around the kill, printed and returned."""
    around = churn.around_the_kill()
    assert churn.killed_at is not None
    offset = churn.killed_at - churn.started
    failed = [(at, outcome, took) for at, outcome, took in around if outcome not in ("101", "429")]
    after = [(at, outcome) for at, outcome, _ in around if at >= 0]
    summary = {
        "policy": policy,
        "failover": {k: round(v, 2) for k, v in failover.items()},
        "handshakes": len(around),
        "outcomes after the kill": dict(collections.Counter(o for _, o in after)),
        "refused or failed from": round(failed[0][0], 2) if failed else None,
        "refused or failed until": round(failed[-1][0], 2) if failed else None,
        "slowest refusal (s)": round(max(t for _, _, t in failed), 3) if failed else None,
        "slowest admission after the kill (s)": round(
            max((t for at, o, t in around if at >= 0 and o == "101"), default=0.0), 3
        ),
        "most connections a user held open": dict(churn.most),
        "over the quota (s after the kill)": [
            round(at - offset, 2) for at in churn.over[:1] + churn.over[-1:]
        ],
    }
    print(json.dumps(summary))
    return summary


async def run(policy: str) -> None:
    with running_sentinels() as sentinels:
        env = {"WS_SUPERVISOR_REDIS_ON_UNAVAILABLE": policy}
        with running_nodes(sentinels, env=env) as nodes:
            async with Clients() as clients:
                held: list[ClientConnection] = []
                keys: dict[str, set[str]] = {user: set() for user in USERS}
                for i, user in enumerate(USERS * 2):
                    ws, welcome = await clients.open(nodes[i % 3].url(user, thread_id=f"l{i}"))
                    held.append(ws)
                    keys[user].add(f"{user}:{welcome['thread_id']}")
                churn = Churn(nodes)
                for user in USERS:
                    churn.open[user] = churn.most[user] = len(keys[user])
                workers = [asyncio.create_task(churn.worker(i)) for i in range(WORKERS)]
                try:
                    await asyncio.sleep(KILL_AT)
                    churn.killed_at = time.monotonic()
                    failover = await off(sentinels.kill_master)
                    await asyncio.sleep(AFTER - (time.monotonic() - churn.killed_at))
                finally:
                    churn.stop.set()
                    await asyncio.gather(*workers)
                summary = report(policy, churn, failover)

                # the long-lived connections were never closed, and hold leases on the new master
                for ws in held:
                    await echoes(ws, "still here")
                for user in USERS:
                    await until(
                        lambda user=user: keys[user] <= live_keys(sentinels, user),  # type: ignore[misc]
                        RENEW_INTERVAL + 2,
                        f"{user}'s long-lived leases on the new master",
                    )
                for node in nodes:
                    assert await off(node.metric, "ws_supervisor_ledger_available") == 1.0
                ready = [(await off(node.get, "/readyz"))[1] for node in nodes]
                print(f"{policy}: /readyz once the ledger is back: {ready}")

                # the listeners follow the new master: a push from node-b reaches nodes a and c
                def pushed() -> bool:
                    status, answer = nodes[1].post("/v1/push", {"user_id": "c0", "message": 1})
                    return status == 200 and answer["nodes"] == {
                        "node-b": 0, "node-a": 1, "node-c": 1
                    }  # fmt: skip

                await until(pushed, 10, "a push reaching c0's connections on nodes a and c")

                # handshakes: refused at once under fail_closed, admitted under fail_open
                around = churn.around_the_kill()
                outcomes = collections.Counter(outcome for _, outcome, _ in around)
                if policy == "fail_open":
                    # once Redis is back, a user over the quota keeps the oldest connections:
                    # a newer one admitted on a node's own count may be closed (4002)
                    assert set(outcomes) <= {"101", "429", "closed 4002"}, outcomes
                    # on its own count, each node admits up to the quota: never more overall
                    assert max(churn.most.values()) <= QUOTA * len(nodes)
                else:
                    assert set(outcomes) <= {"101", "429", "503"}, outcomes
                    assert max(churn.most.values()) <= QUOTA, summary
                    refusals = [(at, took) for at, outcome, took in around if outcome == "503"]
                    bound = failover["all_sentinels"] + RETRY_INTERVAL + REDIS_TIMEOUT + 2.0
                    assert all(-0.1 <= at <= bound for at, _ in refusals), summary
                    assert all(took < 2.0 for _, took in refusals), summary  # at once, no wait
                late = [o for at, o, _ in around if at > failover["all_sentinels"] + 3.0]
                assert late and set(late) <= {"101", "429"}, summary  # admissions came back

                # no slot leaks: once every client is gone, Redis holds none
                for ws in held:
                    await ws.close()
                await until(
                    lambda: sum(slots_on_master(sentinels).values()) == 0,
                    RENEW_INTERVAL + 2,
                    "no slot left once every client closed",
                )
                await asyncio.sleep(LEASE_TTL)
                assert sum(slots_on_master(sentinels).values()) == 0


@pytest.mark.parametrize("policy", ["fail_open", "fail_closed"])
async def test_a_master_sigkilled_under_churn_keeps_connections_leases_and_leaks_nothing(
    policy: str,
) -> None:
    await run(policy)
