"""One user opening connections as fast as possible never holds more than the quota."""

from __future__ import annotations

import asyncio
import json

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from tests.integration.harness import running_daemon, ws_url

pytestmark = pytest.mark.asyncio


async def test_a_burst_of_handshakes_for_one_user_never_exceeds_the_quota_at_any_instant() -> None:
    async with running_daemon(
        {"quota": {"max_managers_per_user": 5}, "thresholds": {"emergency_action": "none"}}
    ) as daemon:
        open_now: set[ClientConnection] = set()
        peak_open = 0
        peak_slots = 0
        sampling = True

        async def sample() -> None:
            nonlocal peak_slots
            while sampling:
                peak_slots = max(peak_slots, daemon.tree.ledger.usage("alice"))
                await asyncio.sleep(0)

        async def attempt() -> int:
            nonlocal peak_open
            try:
                ws = await connect(ws_url(daemon))
            except InvalidStatus as refused:
                return refused.response.status_code
            json.loads(await ws.recv())  # the welcome: this connection is served
            open_now.add(ws)
            peak_open = max(peak_open, len(open_now))
            return 101

        sampler = asyncio.create_task(sample())
        statuses = await asyncio.gather(*(attempt() for _ in range(60)))
        sampling = False
        await sampler
        assert statuses.count(101) == 5 and statuses.count(429) == 55
        assert peak_open == 5 and peak_slots == 5
        assert daemon.tree.ledger.usage("alice") == 5
        for ws in open_now:
            await ws.close()
