"""``serve --workers 2`` on the Redis ledger: each worker a node, a dead one's slots freed at once.

One real master with two workers, on a real redis-server of this test's
own; leases of 30 s, so that slots freed "at once" cannot be leases that
ran out.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from supervisor.admin.dump import every_user
from tests.cluster.nodes import CI_CONFIG, CLUSTER_ENV, Clients, live_slots, until
from tests.cluster.redis_server import RedisServer
from tests.integration.harness import CLI, DaemonProcess

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(120)]

LONG_LEASES = {"WS_SUPERVISOR_REDIS_LEASE_TTL": "30.0", "WS_SUPERVISOR_REDIS_RENEW_INTERVAL": "5.0"}


def nodes_of(server: RedisServer, user: str) -> set[str]:
    return {node for node, _ in live_slots(server, user).values()}


async def test_a_killed_worker_s_slots_leave_redis_at_once_and_no_other_worker_s(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    env = {
        **CLUSTER_ENV,
        **LONG_LEASES,
        "WS_SUPERVISOR_REDIS_URL": redis_server.url,
        "WS_SUPERVISOR_SERVER_NODE_ID": "pair",
    }
    argv = [CLI, "serve", "--config", str(CI_CONFIG), "--workers", "2"]
    proc = DaemonProcess(None, env=env, argv=argv)
    try:
        proc.wait_ready(60)
        state = proc.get("/debug/state")[1]
        pids = {w["worker_id"]: w["pid"] for w in state["workers"]}
        async with Clients() as clients:
            users: list[str] = []
            where: dict[str, int] = {}
            while set(where.values()) != {0, 1}:  # the route is a keyed hash: users until both
                assert len(users) < 64
                users.append(f"user{len(users)}")
                await clients.open(proc.url(users[-1]))
                state = proc.get("/debug/state")[1]
                where = {u["user_id"]: u["worker"] for u in every_user(state)}
            for user in users:
                for _ in range(2):
                    await clients.open(proc.url(user))
            for user in users:
                assert nodes_of(redis_server, user) == {f"pair-w{where[user]}"}
            os.kill(pids[1], signal.SIGKILL)
            gone = [user for user in users if where[user] == 1]
            kept = [user for user in users if where[user] == 0]
            took = await until(
                lambda: all(not live_slots(redis_server, user) for user in gone),
                10.0,
                "the dead worker's slots gone from Redis",
            )
            assert took < 10.0  # leases of 30 s: freed by the master, not by time
            for user in kept:
                assert len(live_slots(redis_server, user)) == 3
            await until(lambda: proc.get("/readyz")[0] == 200, 30.0, "worker 1 back")
            for _ in range(5):  # its users connect again, up to the whole quota
                await clients.open(proc.url(gone[0]))
            assert nodes_of(redis_server, gone[0]) == {"pair-w1-1"}  # a node id of its own
    finally:
        proc.signal(signal.SIGTERM)  # its workers drain with it
        proc.wait(30)
        proc.kill()
