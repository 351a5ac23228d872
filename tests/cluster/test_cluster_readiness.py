"""Every node's /readyz follows Redis, whether the node holds slots or not (issue #25).

Three daemons of the ci profile on one redis-server: renew_interval 1 s, a
Redis call timeout of 1 s (``tests.cluster.nodes.CLUSTER_ENV``). Only node-a
holds a slot; node-b and node-c are idle. Redis is stopped (connections
refused) or frozen (SIGSTOP: calls hang until their timeout), then brought back.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time

import pytest

from tests.cluster.nodes import RENEW_INTERVAL, Clients, Node, off, running_nodes
from tests.cluster.redis_server import RedisServer

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(90)]

TIMEOUT = 1.0  # [redis] timeout of CLUSTER_ENV
RETRY_INTERVAL = 0.2  # [redis] retry_interval of the ci profile
BOUND = RENEW_INTERVAL + TIMEOUT  # the bound for noticing Redis gone
SLACK = 0.5  # polling every 20 ms and a loaded 2-core machine; the bound itself is the feature


def seconds_until(node: Node, status: int, started: float, limit: float) -> float:
    """Poll the node's /readyz until it answers ``status``; seconds since ``started``."""
    while time.monotonic() - started < limit:
        if node.get("/readyz", timeout=2)[0] == status:
            return time.monotonic() - started
        time.sleep(0.02)
    raise AssertionError(f"{node.node_id}: /readyz not {status} within {limit:g}s")


async def every_node_turns(
    nodes: list[Node], status: int, started: float, limit: float
) -> list[float]:
    return list(
        await asyncio.gather(*(off(seconds_until, n, status, started, limit) for n in nodes))
    )


@pytest.mark.parametrize("outage", ["stopped", "frozen"])
async def test_an_idle_node_reports_not_ready_within_one_renewal_and_ready_once_redis_is_back(
    redis_server: RedisServer, outage: str
) -> None:
    with running_nodes(redis_server) as nodes:
        async with Clients() as clients:
            await clients.open(nodes[0].url("holder"))
            assert [n.get("/readyz")[0] for n in nodes] == [200, 200, 200]
            started = time.monotonic()
            if outage == "stopped":
                redis_server.stop()
            else:
                assert redis_server.pid is not None
                os.kill(redis_server.pid, signal.SIGSTOP)
            try:
                gone = await every_node_turns(nodes, 503, started, BOUND + 5)
                reasons = [node.get("/readyz")[1].get("reasons") for node in nodes]
            finally:
                if outage == "frozen":
                    assert redis_server.pid is not None
                    os.kill(redis_server.pid, signal.SIGCONT)
            print(f"{outage}: /readyz 503 after {[round(s, 2) for s in gone]} s (bound {BOUND:g})")
            assert max(gone) <= BOUND + SLACK, gone
            assert reasons == [["redis ledger unavailable (fail_open)"]] * 3
            if outage == "stopped":
                await off(redis_server.start)
            started = time.monotonic()
            back = await every_node_turns(nodes, 200, started, 10)
            print(f"{outage}: /readyz 200 again after {[round(s, 2) for s in back]} s")
            assert max(back) <= RETRY_INTERVAL + TIMEOUT + SLACK, back
