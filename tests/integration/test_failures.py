"""Every admission the service failed is counted, in the metrics and in readiness, on a real daemon.

The issue's measurement, reproduced: an overloaded node (its Redis ledger
stalled with ``CLIENT PAUSE``) answers 19 of 40 handshakes 503 "no answer
in time"; those used to be invisible to ``/readyz`` and to the metrics.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from supervisor.daemon import Daemon
from tests.cluster.redis_server import RedisServer
from tests.integration.harness import admin_get, open_ws, running_daemon, wait_for, ws_url

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(60)]

FAILURES = "ws_supervisor_admission_failures_total"
HANDSHAKES = "ws_supervisor_handshakes_total"


def stalled_redis(redis_server: RedisServer, **limits: Any) -> dict[str, Any]:
    """A daemon on ``redis_server`` that gives up on an admission after 0.3 s."""
    return {
        "quota": {"backend": "redis", "max_managers_per_user": 5},
        "redis": {"url": redis_server.url, "timeout": 3.0},
        "server": {"admission_timeout": 0.3},
        "limits": limits,
    }


def pause(redis_server: RedisServer, ms: int) -> None:
    redis_server.client().execute_command("CLIENT", "PAUSE", ms, "ALL")  # type: ignore[no-untyped-call]


async def refused(url: str) -> tuple[int, str]:
    with pytest.raises(InvalidStatus) as caught:
        ws = await connect(url, open_timeout=5)
        await ws.close()
    response = caught.value.response
    return response.status_code, response.body.decode().strip()


async def scrape(daemon: Daemon) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    status, text = await admin_get(daemon, "/metrics")
    assert status == 200
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def test_admissions_that_got_no_answer_in_time_are_failures_and_make_the_node_not_ready(
    redis_server: RedisServer,
) -> None:
    async with running_daemon(stalled_redis(redis_server)) as daemon:
        served: list[ClientConnection] = [
            await open_ws(ws_url(daemon, user=f"u{n}")) for n in range(21)
        ]
        assert (await admin_get(daemon, "/readyz"))[0] == 200
        pause(redis_server, 1500)
        answers = await asyncio.gather(
            *(refused(ws_url(daemon, user=f"late{n}")) for n in range(19))
        )
        assert answers == [(503, "no answer in time")] * 19
        status, body = await admin_get(daemon, "/readyz")
        assert status == 503
        assert (
            "admission success 0.53 < 0.95 over the last 300s (n=40)" in json.loads(body)["reasons"]
        )
        metrics = await scrape(daemon)
        assert metrics[(FAILURES, (("outcome", "timeout"),))] == 19
        assert metrics[(HANDSHAKES, (("status", "503"),))] == 19
        assert metrics[(HANDSHAKES, (("status", "101"),))] == 21
        ready = {k[1][0][1]: v for k, v in metrics.items() if k[0] == "ws_supervisor_ready"}
        assert ready["success_rate"] == 0.0 and ready["draining"] == 1.0
        # the answers that came after the pause are undone: no slot is left behind
        await wait_for(lambda: daemon.tree.ledger.total() == 21, timeout=10, what="undone")
        for ws in served:
            await ws.close()


async def test_a_handshake_refused_while_too_many_are_in_progress_is_a_failure(
    redis_server: RedisServer,
) -> None:
    overrides = stalled_redis(redis_server, max_concurrent_handshakes=1)
    async with running_daemon(overrides) as daemon:
        pause(redis_server, 1000)
        first = asyncio.ensure_future(refused(ws_url(daemon, user="first")))
        await wait_for(lambda: daemon.front.handshakes.active == 1, what="first waits")
        assert await refused(ws_url(daemon, user="second")) == (
            503,
            "too many handshakes in progress",
        )
        assert await first == (503, "no answer in time")
        metrics = await scrape(daemon)
        assert metrics[(FAILURES, (("outcome", "handshakes_busy"),))] == 1
        assert metrics[(FAILURES, (("outcome", "timeout"),))] == 1
        assert daemon.readiness.admission_counts() == (0, 2)
