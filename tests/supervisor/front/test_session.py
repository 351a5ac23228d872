"""A connection's life on the loop: its frames carried to the manager, in order, in limits."""

from __future__ import annotations

import asyncio
import json

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.integration.harness import running_daemon, wait_for, ws_url

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(60)]


async def echoes(client: ClientConnection, count: int) -> list[object]:
    """The next ``count`` frames the client reads, each as JSON: its ``data``, or the frame."""
    found: list[object] = []
    for _ in range(count):
        frame = json.loads(await asyncio.wait_for(client.recv(), 5))
        found.append(frame["data"] if frame["type"] == "echo" else frame["code"])
    return found


async def test_whole_text_frames_behind_binary_and_fragmented_messages_are_answered_in_order() -> (
    None
):
    async with running_daemon() as daemon, connect(ws_url(daemon), open_timeout=5) as client:
        await client.recv()  # the welcome
        for round_ in range(3):
            await client.send(b"binary")  # through websockets' recv
            await client.send(iter(['{"type": "echo", ', f'"data": "fragmented {round_}"}}']))
            for n in range(20):  # whole frames: the parser's path, once nothing waits ahead
                await client.send(json.dumps({"type": "echo", "data": n}))
            expected = ["binary_not_supported", f"fragmented {round_}", *range(20)]
            assert await echoes(client, 22) == expected


async def test_a_whole_text_frame_that_is_not_utf8_closes_the_connection_with_1007() -> None:
    async with running_daemon() as daemon, connect(ws_url(daemon), open_timeout=5) as client:
        await client.recv()  # the welcome
        await client.send(json.dumps({"type": "echo", "data": "before"}))
        assert await echoes(client, 1) == ["before"]
        client.protocol.send_text(b'{"type": "echo", "data": "\xff"}')  # one frame, not UTF-8
        client.send_data()
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(client.recv(), 5)
        assert client.close_code == 1007
        await wait_for(lambda: daemon.tree.ledger.usage("alice") == 0, 5, "alice's slot free")


async def test_whole_text_frames_past_the_burst_go_unanswered_and_the_connection_closes_1008() -> (
    None
):
    limits = {"limits": {"messages_per_second": 0.1, "message_burst": 10}}  # no refill in the test
    async with running_daemon(limits) as daemon, connect(ws_url(daemon), open_timeout=5) as client:
        await client.recv()  # the welcome
        for n in range(10):  # the burst: one write each
            await client.send(json.dumps({"type": "echo", "data": n}))
        assert await echoes(client, 10) == list(range(10))
        answered = []
        with pytest.raises(ConnectionClosed):  # raised by a send too, if the close came first
            for n in range(10, 30):  # past the burst
                await client.send(json.dumps({"type": "echo", "data": n}))
            while True:
                answered.append(await asyncio.wait_for(client.recv(), 5))
        assert answered == []
        assert (client.close_code, client.close_reason) == (1008, "message rate exceeded")
