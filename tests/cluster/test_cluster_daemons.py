"""Three real daemon processes on loopback sharing one real redis-server (issue #6).

Each test starts its own redis-server (fixture ``redis_server``) and three
``ws-supervisor serve`` processes of the ci profile with the Redis quota
backend: quota 5 per user, lease 3 s renewed every 1 s. Clients are real
WebSocket clients on this test's event loop; Redis is read directly.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import threading
import time
from functools import partial
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection

from actors.codes import ServerCloseCode
from tests.cluster.nodes import (
    LEASE_TTL,
    QUOTA,
    RENEW_INTERVAL,
    Clients,
    close_code,
    echoes,
    lease_expiry,
    live_slots,
    off,
    running_nodes,
    slots_key,
    until,
)
from tests.cluster.redis_server import RedisServer
from tests.integration.harness import CLI

# Slots of a dead node, or left by closed clients, must be gone within one lease after the
# last renewal; this margin covers polling and a loaded 2-core machine, no more.
MARGIN = 1.0


def ids(welcomes: list[dict[str, Any]]) -> set[str]:
    return {welcome["websocket_id"] for welcome in welcomes}


@pytest.mark.asyncio
@pytest.mark.timeout(60)
async def test_a_burst_over_three_nodes_never_holds_more_than_the_quota_and_429s_the_rest(
    redis_server: RedisServer,
) -> None:
    user, burst = "burst", 30
    with running_nodes(redis_server) as nodes:
        async with Clients() as clients:
            redis_seen: list[int] = []
            clients_seen: list[int] = []
            done = threading.Event()

            def sample_redis() -> None:
                client = redis_server.client()
                try:
                    while not done.is_set():
                        redis_seen.append(client.zcard(slots_key(user)))
                        time.sleep(0.002)
                finally:
                    client.close()

            async def sample_clients() -> None:
                while True:
                    clients_seen.append(len(clients.open_now()))
                    await asyncio.sleep(0.001)

            async def handshake(i: int) -> tuple[ClientConnection, dict[str, Any]] | int:
                answer = await clients.attempt(nodes[i % 3].url(user, thread_id=f"t{i}"))
                clients_seen.append(len(clients.open_now()))  # the moment the count may rise
                return answer

            sampler = threading.Thread(target=sample_redis, name="redis-sampler")
            sampler.start()
            watcher = asyncio.create_task(sample_clients())
            try:
                await until(lambda: bool(redis_seen), 5, "the Redis sampler to start")
                before = len(redis_seen)
                answers = await asyncio.gather(*(handshake(i) for i in range(burst)))
                during = len(redis_seen) - before
            finally:
                watcher.cancel()
                done.set()
                await off(sampler.join)

            admitted = [answer for answer in answers if not isinstance(answer, int)]
            refused = [answer for answer in answers if isinstance(answer, int)]
            assert len(admitted) == QUOTA
            assert refused == [429] * (burst - QUOTA)
            assert during >= 5, f"Redis sampled only {during} times while the burst ran"
            assert max(redis_seen) <= QUOTA, f"Redis held {max(redis_seen)} slots at once"
            assert max(clients_seen) <= QUOTA, f"{max(clients_seen)} clients open at once"

            # settled: exactly the admitted connections hold the user's five slots
            welcomes = [welcome for _, welcome in admitted]
            held = await off(live_slots, redis_server, user)
            assert {ws for _, ws in held.values()} == ids(welcomes)
            assert len(clients.open_now()) == QUOTA
            for ws, _ in admitted:
                await echoes(ws, "settled")
            states = [await off(node.user_state, user) for node in nodes]
            assert sum(state["used"] for state in states if state) == QUOTA
            assert all(state["cluster_used"] == QUOTA for state in states if state)


@pytest.mark.asyncio
@pytest.mark.timeout(60)
async def test_a_sigkilled_nodes_slots_free_within_the_lease_and_its_users_move_on(
    redis_server: RedisServer,
) -> None:
    with running_nodes(redis_server) as (a, b, c):
        async with Clients() as clients:
            for i in range(QUOTA):
                await clients.open(a.url("kim", thread_id=f"a{i}"))
            lee_b = [await clients.open(b.url("lee", thread_id=f"b{i}")) for i in range(2)]
            for i in range(2):
                await clients.open(a.url("lee", thread_id=f"a{i}"))
            assert len(await off(live_slots, redis_server, "kim")) == QUOTA
            assert len(await off(live_slots, redis_server, "lee")) == 4
            leased = await off(lease_expiry, redis_server, "lee", "lee:a1")
            await until(
                lambda: lease_expiry(redis_server, "lee", "lee:a1") > leased,
                2 * RENEW_INTERVAL + MARGIN,
                "node-a to renew its leases once before it dies",
            )

            a.signal(signal.SIGKILL)
            killed = time.monotonic()
            # right after the kill the dead node's leases still count against the quota
            assert await clients.refusal(b.url("kim", thread_id="early")) == 429

            def node_a_gone() -> bool:
                return all(
                    node != "node-a"
                    for user in ("kim", "lee")
                    for node, _ in live_slots(redis_server, user).values()
                )

            bound = LEASE_TTL + MARGIN
            await until(node_a_gone, bound + 10, "node-a's slots to expire")
            freed_after = time.monotonic() - killed
            assert freed_after <= bound, f"freed {freed_after:.2f}s after the kill, bound {bound}s"
            assert a.proc.wait(5) == -signal.SIGKILL

            lee_slots = await off(live_slots, redis_server, "lee")
            assert lee_slots == {
                f"lee:b{i}": ("node-b", lee_b[i][1]["websocket_id"]) for i in (0, 1)
            }
            assert await off(b.cluster_slots, "kim") == []

            # kim takes her whole quota on the surviving nodes, and not one slot more
            for i in range(QUOTA):
                await clients.open((b, c)[i % 2].url("kim", thread_id=f"n{i}"))
            assert await clients.refusal(c.url("kim", thread_id="sixth")) == 429
            kim = await off(live_slots, redis_server, "kim")
            assert sorted(node for node, _ in kim.values()) == ["node-b"] * 3 + ["node-c"] * 2
            for i in range(2):
                await clients.open(c.url("lee", thread_id=f"c{i}"))
            for ws, _ in lee_b:
                await echoes(ws, "still here")
            assert len(await off(live_slots, redis_server, "lee")) == 4


@pytest.mark.asyncio
@pytest.mark.timeout(60)
async def test_resuming_a_thread_on_another_node_closes_the_old_one_with_4001_and_keeps_one_slot(
    redis_server: RedisServer,
) -> None:
    with running_nodes(redis_server) as (a, b, c):
        async with Clients() as clients:
            old, _ = await clients.open(a.url("max", thread_id="t1"))
            new, welcome = await clients.open(b.url("max", thread_id="t1"))
            assert await close_code(old, 10) == ServerCloseCode.SUPERSEDED

            expected = {"max:t1": ("node-b", welcome["websocket_id"])}
            assert await off(live_slots, redis_server, "max") == expected
            [slot] = await off(c.cluster_slots, "max")
            assert (slot["node_id"], slot["websocket_id"]) == expected["max:t1"]
            await until(
                lambda: (a.user_state("max") or {"used": 0})["used"] == 0,
                10,
                "node-a to let go of the superseded connection",
            )

            # two renewals later (every node renews each second) it is still one slot, B's
            scores: list[float] = []

            def renewed_twice() -> bool:
                score = lease_expiry(redis_server, "max", "max:t1")
                if not scores or score > scores[-1]:
                    scores.append(score)
                return len(scores) >= 3

            await until(renewed_twice, 3 * RENEW_INTERVAL + MARGIN, "two renewals of the slot")
            assert await off(live_slots, redis_server, "max") == expected
            for node in (a, b):  # every node reads the same single slot
                [slot] = await off(node.cluster_slots, "max")
                assert (slot["node_id"], slot["websocket_id"]) == expected["max:t1"]
            await echoes(new, "resumed")


@pytest.mark.asyncio
@pytest.mark.timeout(90)
@pytest.mark.parametrize("policy", ["fail_open", "fail_closed"])
async def test_redis_stopped_and_restarted_drops_no_connection_and_leaks_no_slot(
    redis_server: RedisServer, policy: str
) -> None:
    env = {"WS_SUPERVISOR_REDIS_ON_UNAVAILABLE": policy}
    available = "ws_supervisor_ledger_available"
    with running_nodes(redis_server, env=env) as nodes:
        a, b, c = nodes
        async with Clients() as clients:
            ned = [await clients.open(a.url("ned", thread_id=f"t{i}")) for i in range(2)]
            ned.append(await clients.open(b.url("ned", thread_id="t2")))
            ola = await clients.open(c.url("ola", thread_id="t0"))
            before = [*ned, ola]
            for node in nodes:
                assert await off(node.metric, available) == 1

            await off(redis_server.stop)
            for node in nodes:
                await until(partial(node.ready_is, 503), 5, f"{node.node_id} to be unready")
                status, body = await off(node.get, "/readyz")
                assert status == 503 and body["ready"] is False
                assert f"redis ledger unavailable ({policy})" in body["reasons"]
                assert await off(node.metric, available) == 0
            for ws, _ in before:
                await echoes(ws, "redis is down")

            kept: list[tuple[ClientConnection, dict[str, Any]]] = []
            if policy == "fail_closed":  # more than readiness's 20 samples: 2 of 26 succeeded
                late = [a.url("ned", thread_id=f"n{i}") for i in range(24)]
                assert [await clients.refusal(url) for url in late] == [503] * 24
                assert await clients.refusal(c.url("pat", thread_id="n0")) == 503
            else:  # node-a counts alone: 3 more for ned there (5 on it, 6 in the cluster)
                outage = [await clients.open(a.url("ned", thread_id=f"o{i}")) for i in range(3)]
                assert await clients.refusal(a.url("ned", thread_id="o3")) == 429
                for ws, _ in outage[1:]:  # released while Redis is away: must not come back
                    await ws.close()
                kept = outage[:1]

            await off(redis_server.start)
            for node in nodes:  # the ledger's refusals are no failure of the node's: ready at once
                await until(partial(node.ready_is, 200), 10, f"{node.node_id} to be ready")
                assert await off(node.metric, available) == 1

            # Redis came back empty: every node registered its open connections, nothing else
            expected = {
                f"ned:{w['thread_id']}": (node, w["websocket_id"])
                for node, (_, w) in zip(["node-a"] * 2 + ["node-b"], ned, strict=True)
            }
            expected.update(
                {f"ned:{w['thread_id']}": ("node-a", w["websocket_id"]) for _, w in kept}
            )
            assert await off(live_slots, redis_server, "ned") == expected
            assert await off(live_slots, redis_server, "ola") == {
                "ola:t0": ("node-c", ola[1]["websocket_id"])
            }
            for ws, _ in [*before, *kept]:
                await echoes(ws, "redis is back")
            assert set(clients.open_now()) == {ws for ws, _ in [*before, *kept]}
            await clients.open(c.url("ned", thread_id="after"))  # admitted again

            await asyncio.gather(*(ws.close() for ws in clients.opened))
            bound = LEASE_TTL + MARGIN
            await until(lambda: not redis_server.keys("wss:*"), bound, "every wss:* key to go")
            for node in nodes:
                assert node.alive, f"{node.node_id} exited"
                assert (await off(node.get, "/healthz"))[0] == 200


@pytest.mark.asyncio
@pytest.mark.timeout(60)
async def test_a_quick_redis_restart_drops_no_connection_and_every_node_registers_again(
    redis_server: RedisServer,
) -> None:
    with running_nodes(redis_server) as nodes:
        async with Clients() as clients:
            opened = [await clients.open(node.url("uma", thread_id=node.node_id)) for node in nodes]
            expected = {
                f"uma:{w['thread_id']}": (w["thread_id"], w["websocket_id"]) for _, w in opened
            }
            assert await off(live_slots, redis_server, "uma") == expected

            await off(redis_server.stop)  # no persistence: it comes back empty ...
            await off(redis_server.start)  # ... within a fraction of the renewal interval
            await until(
                lambda: live_slots(redis_server, "uma") == expected,
                2 * RENEW_INTERVAL + MARGIN,
                "every node to register its slot in the new Redis",
            )
            for ws, _ in opened:
                await echoes(ws, "after the restart")
            assert len(clients.open_now()) == len(nodes)


@pytest.mark.asyncio
@pytest.mark.timeout(60)
async def test_a_sixth_connection_on_another_node_evicts_the_oldest_slot_with_4002(
    redis_server: RedisServer,
) -> None:
    env = {"WS_SUPERVISOR_QUOTA_POLICY": "evict_oldest_idle"}
    with running_nodes(redis_server, env=env) as (a, b, c):
        async with Clients() as clients:
            first = [await clients.open(a.url("pia", thread_id=f"t{i}")) for i in range(2)]
            rest = [await clients.open(b.url("pia", thread_id=f"t{i}")) for i in range(2, QUOTA)]
            sixth, welcome = await clients.open(c.url("pia", thread_id="t5"))

            assert await close_code(first[0][0], 10) == ServerCloseCode.EVICTED
            held = await off(live_slots, redis_server, "pia")
            assert sorted(held) == [f"pia:t{i}" for i in range(1, 6)]
            assert held["pia:t5"] == ("node-c", welcome["websocket_id"])
            await until(
                lambda: (a.user_state("pia") or {"used": 0})["used"] == 1,
                10,
                "node-a to count one connection left",
            )
            for ws, _ in [first[1], *rest, (sixth, welcome)]:
                await echoes(ws, "kept")


@pytest.mark.asyncio
@pytest.mark.timeout(60)
async def test_dump_cluster_lists_a_users_slots_on_every_node_and_debug_state_counts_both(
    redis_server: RedisServer,
) -> None:
    with running_nodes(redis_server) as nodes:
        a, b, c = nodes
        async with Clients() as clients:
            placed = [(a, "t0"), (a, "t1"), (b, "t2"), (c, "t3")]
            quinn = [await clients.open(node.url("quinn", thread_id=t)) for node, t in placed]
            rex = await clients.open(a.url("rex", thread_id="t0"))

            for node in nodes:  # any node reads the whole cluster
                result = await off(
                    lambda n=node: subprocess.run(
                        [CLI, "dump", "--admin", n.admin, "--cluster", "--user", "quinn"],
                        capture_output=True,
                        text=True,
                        timeout=20,
                    )
                )
                assert result.returncode == 0, result.stderr
                out = result.stdout
                assert f"read by node {node.node_id}: 1 user(s)" in out
                assert "quinn  4 slot(s) on node-a, node-b, node-c" in out
                lines = out.splitlines()
                for (holder, thread), (_, welcome) in zip(placed, quinn, strict=True):
                    [line] = [line for line in lines if welcome["websocket_id"] in line]
                    assert f"quinn:{thread}" in line and f"node {holder.node_id}" in line
                assert "rex" not in out and rex[1]["websocket_id"] not in out

            for node, used in ((a, 2), (b, 1), (c, 1)):
                state = await off(node.user_state, "quinn")
                assert state is not None
                assert (state["used"], state["cluster_used"]) == (used, 4), node.node_id
            rex_state = await off(a.user_state, "rex")
            assert rex_state is not None
            assert (rex_state["used"], rex_state["cluster_used"]) == (1, 1)
