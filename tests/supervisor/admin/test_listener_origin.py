"""The admin listener refuses another site's page and a name pointed at loopback, over real HTTP."""

from __future__ import annotations

import pytest

from tests.supervisor.admin.test_listener import (
    admin_node,
    connect_off_loop,
    drain_frames,
    exchange,
    off_loop,
)

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(30)]


async def test_a_cross_site_push_from_a_browser_page_is_403_and_delivers_nothing() -> None:
    async with admin_node() as node:
        _, port, _ = await connect_off_loop(node.tree, "alice")
        host = f"127.0.0.1:{node.server.port}"

        def post(origin: str) -> bytes:  # what a browser page sends: a "simple" POST, its Origin
            body = b'{"user_id": "alice", "message": "hi!"}'
            return (
                f"POST /v1/push HTTP/1.1\r\nHost: {host}\r\nOrigin: {origin}\r\n"
                f"Content-Type: text/plain\r\nContent-Length: {len(body)}\r\n\r\n"
            ).encode() + body

        answer = await exchange(node.server.port, post("https://evil.example"))
        assert answer.status == 403
        assert "'https://evil.example' is another site's" in answer.json()["error"]
        assert drain_frames(port) == []
        own = await exchange(node.server.port, post(f"http://{host}"))  # the listener's own page
        assert (own.status, own.json()) == (200, {"delivered": 1})
        assert await off_loop(lambda: port.frames.get(timeout=2)) == '"hi!"'


async def test_a_request_to_a_name_pointed_at_loopback_is_403_on_every_route() -> None:
    async with admin_node() as node:
        for path in ("/debug/state", "/metrics", "/ui"):
            raw = f"GET {path} HTTP/1.1\r\nHost: rebound.example:{node.server.port}\r\n\r\n"
            answer = await exchange(node.server.port, raw.encode())
            assert answer.status == 403, path
            assert "'rebound.example:" in answer.json()["error"]


async def test_clients_that_are_not_browsers_are_answered_as_before() -> None:
    async with admin_node() as node:
        for host in (None, "127.0.0.1", f"localhost:{node.server.port}"):
            lines = ["GET /healthz HTTP/1.1", *([f"Host: {host}"] if host else [])]
            raw = ("\r\n".join(lines) + "\r\n\r\n").encode()
            answer = await exchange(node.server.port, raw)
            assert answer.status == 200, host


async def test_a_second_host_or_origin_header_is_400() -> None:
    async with admin_node() as node:
        for name in ("Host", "Origin"):
            raw = f"GET /healthz HTTP/1.1\r\n{name}: 127.0.0.1\r\n{name}: 127.0.0.1\r\n\r\n"
            answer = await exchange(node.server.port, raw.encode())
            assert (answer.status, answer.json()) == (400, {"error": f"duplicate {name} header"})
