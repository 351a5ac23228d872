"""The access log: one line per connection at its end, one per refused handshake, nothing else.

Each test starts a real tree and front on loopback (``running_front``) and
real websockets clients; the lines are read from the log records.
"""

from __future__ import annotations

import asyncio
import logging
import re

import pytest
from websockets.asyncio.client import connect

from supervisor.front.access import closed_by
from tests.integration.harness import open_client, open_ws, recv_json, wait_for
from tests.supervisor.front.test_server import refusal, running_front, url

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(60)]

ACCESS = "supervisor.access"


def access_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == ACCESS]


def fields(line: str) -> dict[str, str]:
    return dict(re.findall(r"(\w+)=(\S+)", line))


async def one_access_line(caplog: pytest.LogCaptureFixture) -> dict[str, str]:
    await wait_for(lambda: bool(access_lines(caplog)), what="the access line")
    [line] = access_lines(caplog)
    return {"event": line.split()[0], **fields(line)}


async def test_the_side_that_closed_first_is_named_from_websockets_close_order() -> None:
    assert closed_by(True) == "client"
    assert closed_by(False) == "server"
    assert closed_by(None) == "none"


async def test_a_connection_costs_one_line_at_info_written_when_it_ends_with_the_whole_story(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO):
        async with running_front() as front:
            ws, welcome = await open_client(url(front, query="user_id=alice&thread_id=t-1"))
            await ws.send('{"type": "echo", "data": 1}')
            assert (await recv_json(ws))["type"] == "echo"
            assert access_lines(caplog) == []  # nothing at the open
            await ws.close()
            line = await one_access_line(caplog)
            await asyncio.sleep(0.1)  # nothing else comes after it
            every = [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO]
    assert every == [f"closed {' '.join(f'{k}={v}' for k, v in line.items() if k != 'event')}"]
    assert line["event"] == "closed"
    assert (line["user_id"], line["thread_id"]) == ("alice", "t-1")
    assert line["websocket_id"] == welcome["websocket_id"]
    assert line["address"] == "127.0.0.1"
    assert (line["code"], line["by"]) == ("1000", "client")
    assert (line["frames_in"], line["frames_out"]) == ("1", "1")
    assert 0 <= float(line["seconds"]) < 30


async def test_a_connection_the_server_closes_says_so_with_its_code(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO, logger=ACCESS):
        async with running_front() as front:
            old, welcome = await open_client(url(front, query="user_id=alice&thread_id=t-1"))
            new = await open_ws(url(front, query="user_id=alice&thread_id=t-1"))  # supersedes
            line = await one_access_line(caplog)
            await old.wait_closed()
            await new.close()
    assert (line["websocket_id"], line["code"], line["by"]) == (
        welcome["websocket_id"],
        "4001",
        "server",
    )


async def test_a_dropped_peer_is_logged_with_1006_and_no_side(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO, logger=ACCESS):
        async with running_front() as front:
            ws = await open_ws(url(front))
            ws.transport.abort()
            line = await one_access_line(caplog)
    assert (line["code"], line["by"]) == ("1006", "none")


async def test_a_refused_handshake_costs_one_line_with_its_status_and_reason(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO):
        async with running_front({"quota": {"max_managers_per_user": 1}}) as front:
            held = await open_ws(url(front))
            await refusal(url(front, query=""))  # 401
            await refusal(url(front, query="user_id=alice&thread_id=t-2"))  # 429 at the quota
            await wait_for(lambda: len(access_lines(caplog)) == 2, what="two refusals")
            every = access_lines(caplog)
            await held.close()
    unauthorized, quota = (fields(line) for line in every)
    assert every[0].startswith("refused ") and every[1].startswith("refused ")
    assert unauthorized == {
        "address": "127.0.0.1",
        "status": "401",
        "reason": "missing",  # "missing user_id query parameter": the rest has spaces
    }
    assert every[0].endswith("reason=missing user_id query parameter")
    assert (quota["user_id"], quota["thread_id"], quota["status"]) == ("alice", "t-2", "429")
    assert quota["reason"] == "quota_full"


async def test_a_flood_refused_by_the_address_rate_is_not_logged_at_info(
    caplog: pytest.LogCaptureFixture,
) -> None:
    limits = {"handshakes_per_second_per_address": 0.01, "handshake_burst_per_address": 1}
    with caplog.at_level(logging.INFO):
        async with running_front({"limits": limits}) as front:
            assert (await refusal(url(front, "/other"))).status_code == 404  # the one token
            for _ in range(5):
                assert (await refusal(url(front, "/other"))).status_code == 429
    assert access_lines(caplog) == ["refused address=127.0.0.1 status=404 reason=not found"]


async def test_at_debug_websockets_own_connection_lines_come_back(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.DEBUG):
        async with running_front() as front:
            async with connect(url(front), open_timeout=5) as ws:
                await recv_json(ws)
            await one_access_line(caplog)
            theirs = [r.getMessage() for r in caplog.records if r.name.endswith(".websockets")]
    assert "connection open" in theirs
