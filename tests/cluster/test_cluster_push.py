"""POST /v1/push on any of three daemons reaches the user's connections on every node (#25).

Three ``ws-supervisor serve`` processes of the ci profile on one redis-server
(``[redis] push_timeout`` 1 s); real WebSocket clients; the push answered by
whichever node is asked says what it reached across the cluster.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection

from tests.cluster.nodes import LEASE_TTL, Clients, Node, off, running_nodes, until
from tests.cluster.redis_server import RedisServer

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(90)]

PUSH_TIMEOUT = 1.0  # [redis] push_timeout of the ci profile


async def frames(ws: ClientConnection, wait: float = 0.3) -> list[Any]:
    """Every frame the client gets within ``wait`` seconds of the last one."""
    got = []
    while True:
        try:
            got.append(json.loads(await asyncio.wait_for(ws.recv(), wait)))
        except TimeoutError:
            return got


async def push(node: Node, payload: dict[str, Any]) -> dict[str, Any]:
    status, answer = await off(node.post, "/v1/push", payload)
    assert status == 200, answer
    return dict(answer)


async def test_a_push_on_any_node_reaches_every_connection_once_and_says_where(
    redis_server: RedisServer,
) -> None:
    with running_nodes(redis_server) as (a, b, c):
        async with Clients() as clients:
            t1, _ = await clients.open(a.url("alice", thread_id="t1"))
            t2, _ = await clients.open(b.url("alice", thread_id="t2"))
            t3, _ = await clients.open(b.url("alice", thread_id="t3"))
            t4, _ = await clients.open(c.url("alice", thread_id="t4"))
            bob, _ = await clients.open(b.url("bob", thread_id="t5"))
            answer = await push(a, {"user_id": "alice", "message": {"n": 1}})
            assert answer == {
                "delivered": 4,
                "nodes": {"node-a": 1, "node-b": 2, "node-c": 1},
                "unconfirmed": [],
                "unreachable": [],
                "cluster": "routed",
            }
            for ws in (t1, t2, t3, t4):
                assert await frames(ws) == [{"n": 1}]  # exactly once
            assert await frames(bob, 0.1) == []

            answer = await push(c, {"user_id": "alice", "thread_id": "t3", "message": "x"})
            assert (answer["delivered"], answer["nodes"]) == (1, {"node-c": 0, "node-b": 1})
            assert await frames(t3) == ["x"]
            for ws in (t1, t2, t4):
                assert await frames(ws, 0.1) == []

            answer = await push(b, {"user_id": "nobody", "message": 1})
            assert answer["delivered"] == 0 and answer["nodes"] == {"node-b": 0}


async def test_a_node_killed_before_the_push_is_unreachable_until_its_leases_lapse(
    redis_server: RedisServer,
) -> None:
    with running_nodes(redis_server) as (a, b, c):
        async with Clients() as clients:
            on_a, _ = await clients.open(a.url("alice", thread_id="t1"))
            await clients.open(b.url("alice", thread_id="t2"))
            on_c, _ = await clients.open(c.url("alice", thread_id="t3"))
            b.proc.send_signal(signal.SIGKILL)
            b.proc.wait(10)
            started = time.monotonic()
            answer = await push(a, {"user_id": "alice", "message": 1})
            took = time.monotonic() - started
            assert answer["unreachable"] == ["node-b"], answer
            assert (answer["delivered"], answer["unconfirmed"]) == (2, [])
            assert took < PUSH_TIMEOUT  # nobody listened there: nothing was waited for
            assert await frames(on_a) == [1] and await frames(on_c) == [1]

            async def forgotten() -> bool:
                return (
                    "node-b"
                    not in (await push(a, {"user_id": "alice", "message": 2}))["unreachable"]
                )

            deadline = time.monotonic() + LEASE_TTL + 5
            while not await forgotten():
                assert time.monotonic() < deadline, "node-b still routed to after its leases"
                await asyncio.sleep(0.5)


async def test_a_stalled_node_leaves_its_part_unconfirmed_after_the_push_timeout(
    redis_server: RedisServer,
) -> None:
    with running_nodes(redis_server) as (a, b, c):
        async with Clients() as clients:
            await clients.open(b.url("alice", thread_id="t1"))
            on_c, _ = await clients.open(c.url("alice", thread_id="t2"))
            b.proc.send_signal(signal.SIGSTOP)
            try:
                started = time.monotonic()
                answer = await push(a, {"user_id": "alice", "message": 1})
                took = time.monotonic() - started
            finally:
                b.proc.send_signal(signal.SIGCONT)
            assert answer["unconfirmed"] == ["node-b"], answer
            assert (answer["delivered"], answer["nodes"]) == (1, {"node-a": 0, "node-c": 1})
            assert PUSH_TIMEOUT <= took < PUSH_TIMEOUT + 2.0
            assert await frames(on_c) == [1]
            await until(lambda: b.ready_is(200), 10, "node-b ready again")


async def test_a_push_while_redis_is_down_reaches_this_nodes_connections_and_says_so(
    redis_server: RedisServer,
) -> None:
    with running_nodes(redis_server, count=2) as (a, b):
        async with Clients() as clients:
            on_a, _ = await clients.open(a.url("alice", thread_id="t1"))
            await clients.open(b.url("alice", thread_id="t2"))
            redis_server.stop()
            answer = await push(a, {"user_id": "alice", "message": 1})
            assert answer == {
                "delivered": 1,
                "nodes": {"node-a": 1},
                "unconfirmed": [],
                "unreachable": [],
                "cluster": "unavailable",
            }
            assert await frames(on_a) == [1]
