"""The front behind a trusted proxy: the client address counts for limits, logs and the dump.

A real tree and :class:`WebSocketFront` on a loopback port; the test plays the
load balancer at 127.0.0.9, opening connections with PROXY headers or
forwarding headers, and clients from other 127.0.0.x addresses.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import pytest
from websockets.asyncio.client import connect

from supervisor.front.server import WebSocketFront
from tests.integration.harness import open_ws
from tests.supervisor.front.proxy_headers import upgrade_request, v1, v2
from tests.supervisor.front.test_access import access_lines
from tests.supervisor.front.test_server import refusal, running_front, said, url

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(60)]

PROXY = "127.0.0.9"
TIGHT = {"handshakes_per_second_per_address": 0.01, "handshake_burst_per_address": 2}


async def upgrade_status(front: WebSocketFront, header: bytes, user: str) -> int:
    """The HTTP status of an upgrade sent from the proxy's address after ``header``."""
    port = front.port
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(PROXY, 0))
    try:
        request = upgrade_request(port).replace(b"/ws ", f"/ws?user_id={user} ".encode())
        writer.write(header + request)
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        return int(head.split(b" ", 2)[1])
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def test_behind_a_proxy_protocol_balancer_each_client_address_has_its_own_limit(
    caplog: pytest.LogCaptureFixture,
) -> None:
    overrides = {
        "server": {"trusted_proxies": PROXY, "proxy_protocol": True},
        "limits": TIGHT,
    }
    async with running_front(overrides) as front:
        port = front.port
        with caplog.at_level(logging.DEBUG, "supervisor.access"):
            over = [
                await upgrade_status(front, v2(("127.0.0.2", 1000 + i), ("127.0.0.1", port)), "a")
                for i in range(3)
            ]
            other = [
                await upgrade_status(front, v1(("127.0.0.3", 2000 + i), ("127.0.0.1", port)), "b")
                for i in range(2)
            ]
        assert over == [101, 101, 429]
        assert other == [101, 101]
        refused = "refused address=127.0.0.2 proxy=127.0.0.9 status=429"  # DEBUG: a flood
        assert any(line.startswith(refused) for line in access_lines(caplog))


async def test_the_state_dump_and_the_access_lines_show_the_client_and_the_proxy_it_came_through(
    caplog: pytest.LogCaptureFixture,
) -> None:
    overrides = {"server": {"trusted_proxies": PROXY, "forwarded_header": "x-forwarded-for"}}
    with caplog.at_level(logging.INFO, "supervisor.access"):
        async with running_front(overrides) as front:
            via_proxy = await open_ws(
                url(front, query="user_id=u1"),
                additional_headers={"X-Forwarded-For": "6.6.6.6, 127.0.0.2"},
                local_addr=(PROXY, 0),
            )
            direct = await open_ws(
                url(front, query="user_id=u2"),
                additional_headers={"X-Forwarded-For": "6.6.6.6"},  # forged, from an untrusted peer
                local_addr=("127.0.0.5", 0),
            )
            addresses = sorted(front.clients().values(), key=lambda entry: entry["client"])
            assert addresses == [{"client": "127.0.0.2", "proxy": PROXY}, {"client": "127.0.0.5"}]
            await via_proxy.close()
            await direct.close()
            for _ in range(200):
                if not front.clients() and len(access_lines(caplog)) == 2:
                    break
                await asyncio.sleep(0.01)
            assert front.clients() == {}
    first, second = sorted(access_lines(caplog))  # one line each, at its end
    assert "user_id=u1 " in first and " address=127.0.0.2 proxy=127.0.0.9 code=1000 " in first
    assert "user_id=u2 " in second and " address=127.0.0.5 code=1000 " in second


async def test_a_forged_forwarding_header_from_an_untrusted_peer_changes_no_limit() -> None:
    overrides = {
        "server": {"trusted_proxies": PROXY, "forwarded_header": "x-forwarded-for"},
        "limits": TIGHT,
    }
    async with running_front(overrides) as front:
        for i in range(2):
            forged = {"X-Forwarded-For": f"10.0.0.{i}"}
            ws = await open_ws(
                url(front, query=f"user_id=f{i}"),
                additional_headers=forged,
                local_addr=("127.0.0.5", 0),
            )
            await ws.close()
        response = await refusal(
            url(front, query="user_id=f3"),
            additional_headers={"X-Forwarded-For": "10.0.0.9"},
            local_addr=("127.0.0.5", 0),
        )
        assert said(response) == (429, "too many handshakes from this address")
        ws = await open_ws(url(front, query="user_id=f4"), local_addr=("127.0.0.6", 0))
        await ws.close()


async def test_without_trusted_proxies_a_proxy_header_is_no_http_and_no_slot_is_taken() -> None:
    async with running_front() as front:
        port = front.port
        reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(PROXY, 0))
        writer.write(v1(("127.0.0.2", 1), ("127.0.0.1", port)) + upgrade_request(port))
        answer = await asyncio.wait_for(reader.read(4096), 10)
        writer.close()
        assert not answer.startswith(b"HTTP/1.1 101")
        assert front.tree.ledger.total() == 0
        async with connect(url(front), local_addr=(PROXY, 0)) as ws:
            await ws.recv()  # the welcome: plain clients from that address still connect
