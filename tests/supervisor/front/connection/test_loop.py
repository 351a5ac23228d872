"""The loop side of the fence: the running loop, and a ping written behind a full buffer."""

from __future__ import annotations

import asyncio

import pytest

from supervisor.front.connection import loop, ping_nowait
from tests.hostile import frame
from tests.supervisor.front.connection.test_acyclic import stalled


def test_running_loop_is_the_loop_on_it_and_none_off_it() -> None:
    async def on_loop() -> bool:
        return loop.running_loop() is asyncio.get_running_loop()

    assert asyncio.run(on_loop())
    assert loop.running_loop() is None


@pytest.mark.asyncio
async def test_ping_nowait_writes_behind_a_full_buffer_and_its_future_is_the_pong() -> None:
    async with stalled(32) as (reader, writer, connection):
        pong = ping_nowait(connection)  # returns at once: no drain awaited
        assert pong is not None and not pong.done()
        [payload] = list(connection.pending_pings)
        total = 32 * (65536 + 10) + 6  # every frame (a 10-byte head each), and the ping
        data = await asyncio.wait_for(reader.readexactly(total), 10)  # the client reads them all
        assert b"\x89\x04" + payload in data  # the ping went out among them
        writer.write(frame(0xA, payload))  # its pong is read: the server reads again
        assert await asyncio.wait_for(pong, 5) >= 0.0
        writer.transport.abort()
        await asyncio.wait_for(connection.wait_closed(), 5)
        assert ping_nowait(connection) is None
