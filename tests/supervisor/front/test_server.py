"""The WebSocket front on its own: which refusal a handshake gets, in which order, and its stop.

Each test starts a real supervision tree and a :class:`WebSocketFront` on an
ephemeral loopback port, and real websockets clients (or raw HTTP) connect.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.http11 import Request, Response

from actors.observer import Observer
from actors.tree import SupervisionTree
from supervisor.admin.metrics import MetricsObserver
from supervisor.front.auth import Authenticator
from supervisor.front.bridge import off_loop
from supervisor.front.server import FrontObserver, WebSocketFront, is_upgrade
from tests.integration.harness import loopback_config, open_client, open_ws, wait_for

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(60)]

ORIGINS = {"server": {"origins": "https://app.example.com"}}
GOOD = "https://app.example.com"
EVIL = "https://evil.example.com"
ADMISSIONS = "ws_supervisor_admissions_total"


@contextlib.asynccontextmanager
async def running_front(
    overrides: Mapping[str, Any] | None = None,
    observer: Observer | None = None,
    *,
    front_observer: FrontObserver | None = None,
    auth: Authenticator | None = None,
) -> AsyncIterator[WebSocketFront]:
    """A started tree and its front; stopped as the daemon stops them (tree, then sockets)."""
    config = loopback_config(overrides)
    tree = SupervisionTree(config, observer=observer)
    await off_loop(tree.start)
    auth = auth or Authenticator.from_config(config.auth, config.profile, {})
    front = WebSocketFront(config, tree, auth, observer=front_observer)
    try:
        await front.start()
        yield front
    finally:
        front.stop_accepting()
        await off_loop(tree.stop)
        if not await front.wait_closed(5):
            front.abort()


def url(front: WebSocketFront, path: str = "/ws", query: str = "user_id=alice") -> str:
    return f"ws://127.0.0.1:{front.port}{path}" + (f"?{query}" if query else "")


async def refusal(target: str, **kwargs: Any) -> Response:
    """The HTTP answer that refused the handshake (the test fails if it was accepted)."""
    with pytest.raises(InvalidStatus) as refused:
        ws = await connect(target, open_timeout=5, **kwargs)
        await ws.close()
    return refused.value.response


def said(response: Response) -> tuple[int, str]:
    return response.status_code, response.body.decode().strip()


# --- each refusal -----------------------------------------------------------------------------


async def test_a_wrong_path_is_404() -> None:
    async with running_front() as front:
        assert said(await refusal(url(front, "/other"))) == (404, "not found")


async def test_an_origin_not_allowed_is_403_and_an_allowed_one_connects() -> None:
    async with running_front(ORIGINS) as front:
        assert said(await refusal(url(front), origin=EVIL)) == (403, "origin not allowed")
        ws = await open_ws(url(front), origin=GOOD)
        await ws.close()


async def test_a_handshake_beyond_the_ones_in_progress_is_503() -> None:
    async with running_front({"limits": {"max_concurrent_handshakes": 1}}) as front:
        assert front.handshakes.try_enter()  # one handshake stands in progress
        try:
            response = await refusal(url(front))
        finally:
            front.handshakes.leave()
        assert said(response) == (503, "too many handshakes in progress")
        assert front.handshakes.active == 0


async def test_a_handshake_that_does_not_authenticate_is_401_with_the_reason() -> None:
    async with running_front() as front:
        assert said(await refusal(url(front, query=""))) == (
            401,
            "missing user_id query parameter",
        )


async def test_a_bad_thread_id_is_400_naming_it() -> None:
    async with running_front() as front:
        status, body = said(await refusal(url(front, query="user_id=alice&thread_id=a:b")))
        assert (status, body.split(":")[0]) == (400, "invalid thread_id")


async def test_a_user_at_its_quota_is_429_with_a_retry_after() -> None:
    async with running_front({"quota": {"max_managers_per_user": 1}}) as front:
        first = await open_ws(url(front))
        response = await refusal(url(front))
        assert response.status_code == 429
        assert response.headers["Retry-After"] == "1"
        assert front.tree.ledger.usage("alice") == 1
        await first.close()


async def test_a_new_user_at_node_emergency_is_503_with_a_retry_after_of_5() -> None:
    overrides = {
        "quota": {"node_max_managers": 2},
        "thresholds": {"emergency_action": "none", "critical_action": "none"},
    }
    async with running_front(overrides) as front:
        held = [await open_ws(url(front, query=f"user_id=user{n}")) for n in range(2)]

        def node_level() -> str:
            level: str = front.tree.snapshot()["root"]["node_level"]
            return level

        while await off_loop(node_level) != "emergency":
            await asyncio.sleep(0.01)
        response = await refusal(url(front, query="user_id=newcomer"))
        assert said(response) == (503, "node_emergency")
        assert response.headers["Retry-After"] == "5"
        for ws in held:
            await ws.close()


async def test_a_flood_of_handshakes_from_one_address_is_429_even_on_a_wrong_path() -> None:
    limits = {"handshakes_per_second_per_address": 0.01, "handshake_burst_per_address": 1}
    async with running_front({"limits": limits}) as front:
        assert (await refusal(url(front, "/other"))).status_code == 404  # the one token
        response = await refusal(url(front, "/other"))
        assert said(response) == (429, "too many handshakes from this address")
        assert response.headers["Retry-After"] == "100"
        other = await open_ws(url(front), local_addr=("127.0.0.2", 0))  # another address
        await other.close()


# --- their order --------------------------------------------------------------------------


async def test_the_path_is_checked_before_the_origin() -> None:
    async with running_front(ORIGINS) as front:
        assert (await refusal(url(front, "/other"), origin=EVIL)).status_code == 404


async def test_the_origin_is_checked_before_the_handshakes_in_progress_and_authentication() -> None:
    async with running_front({**ORIGINS, "limits": {"max_concurrent_handshakes": 1}}) as front:
        assert front.handshakes.try_enter()
        try:
            assert (await refusal(url(front, query=""), origin=EVIL)).status_code == 403
        finally:
            front.handshakes.leave()


async def test_the_handshakes_in_progress_are_counted_before_authentication() -> None:
    async with running_front({"limits": {"max_concurrent_handshakes": 1}}) as front:
        assert front.handshakes.try_enter()
        try:
            assert (await refusal(url(front, query=""))).status_code == 503
        finally:
            front.handshakes.leave()


async def test_authentication_comes_before_the_thread_id() -> None:
    async with running_front() as front:
        target = url(front, query="user_id=a:b&thread_id=x:y")
        assert (await refusal(target)).status_code == 401


async def test_no_refused_handshake_takes_a_slot_even_for_a_moment() -> None:
    metrics = MetricsObserver()
    async with running_front({"quota": {"max_managers_per_user": 1}}, metrics) as front:
        held = await open_ws(url(front))
        for target in (url(front, "/other"), url(front, query=""), url(front)):
            await refusal(target)  # 404, 401, and 429 at the quota
        assert front.tree.ledger.total() == 1
        admitted = {"result": "admitted"}
        await wait_for(lambda: metrics.value(ADMISSIONS, {"result": "rejected_quota"}) == 1)
        assert metrics.value(ADMISSIONS, admitted) == 1  # the 404 and 401 never asked for one
        await held.close()
        await wait_for(lambda: front.tree.ledger.total() == 0, what="the slot freed")


# --- a request that is no upgrade -------------------------------------------------------------


def request(**headers: str | list[str]) -> Request:
    pairs: list[tuple[str, str]] = []
    for name, value in headers.items():
        for one in [value] if isinstance(value, str) else value:
            pairs.append((name.replace("_", "-"), one))
    return Request("/ws?user_id=alice", Headers(pairs))


UPGRADE = {
    "Connection": "Upgrade",
    "Upgrade": "websocket",
    "Sec_WebSocket_Key": "dGhlIHNhbXBsZSBub25jZQ==",
    "Sec_WebSocket_Version": "13",
}


@pytest.mark.parametrize(
    ("changes", "upgrade"),
    [
        ({}, True),
        ({"Connection": "keep-alive, Upgrade"}, True),
        ({"Upgrade": "WebSocket"}, True),
        ({"Connection": "keep-alive"}, False),
        ({"Upgrade": "h2c"}, False),
        ({"Sec_WebSocket_Version": "8"}, False),
        ({"Sec_WebSocket_Key": ["a2V5IG9uZQ==", "a2V5IHR3bw=="]}, False),
    ],
)
async def test_a_request_is_an_upgrade_only_with_every_upgrade_header_right(
    changes: dict[str, str | list[str]], upgrade: bool
) -> None:
    assert is_upgrade(request(**{**UPGRADE, **changes})) is upgrade


async def test_a_plain_get_on_the_path_is_refused_by_websockets_and_never_supersedes() -> None:
    async with running_front() as front:
        ws, welcome = await open_client(url(front))
        reader, writer = await asyncio.open_connection("127.0.0.1", front.port)
        query = f"user_id=alice&thread_id={welcome['thread_id']}"
        writer.write(f"GET /ws?{query} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        answer = await asyncio.wait_for(reader.read(), 5)
        writer.close()
        await writer.wait_closed()
        assert answer.startswith(b"HTTP/1.1 426 ")
        assert front.tree.ledger.total() == 1
        await ws.send("still here")  # the connection was not superseded: the tree's echo
        assert await asyncio.wait_for(ws.recv(), 5) == "still here"
        await ws.close()


# --- stopping -----------------------------------------------------------------------------


async def test_stop_accepting_refuses_new_connections_and_keeps_the_open_ones() -> None:
    async with running_front() as front:
        ws = await open_ws(url(front))
        port = front.port
        front.stop_accepting()
        with pytest.raises(OSError):
            await connect(f"ws://127.0.0.1:{port}/ws?user_id=bob", open_timeout=2)
        await ws.send("still served")
        assert await asyncio.wait_for(ws.recv(), 5) == "still served"
        assert front.connections == 1
        await ws.close()
        assert await front.wait_closed(5) is True
        assert front.connections == 0


async def test_abort_drops_every_connection_at_once() -> None:
    async with running_front() as front:
        clients = [await open_ws(url(front, query=f"user_id=u{n}")) for n in range(3)]
        front.stop_accepting()
        assert await front.wait_closed(0.1) is False  # they stay open
        front.abort()
        for ws in clients:
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 5)
            assert ws.close_code == 1006  # no close frame: the TCP connection was dropped
        assert await front.wait_closed(5) is True
