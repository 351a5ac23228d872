"""Three daemons behind a real HAProxy: the real client address, from 127.0.0.x (issue #25).

HAProxy (Debian's 2.6, started by each test on loopback ports) balances
round robin over three ``ws-supervisor serve`` processes of the ci profile on
one redis-server, connecting to them from 127.0.0.9, the proxy the nodes
trust (``[server] trusted_proxies``). Clients bind 127.0.0.2, .3 and .4.
"""

from __future__ import annotations

import asyncio
import collections
import json
from collections.abc import Mapping

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from tests.cluster.haproxy import PROXY_HOST, HAProxy, http_config, running_haproxy, tcp_config
from tests.cluster.nodes import Node, echoes, off, running_nodes, until
from tests.cluster.redis_server import RedisServer
from tests.integration.harness import ROOT, free_port

pytestmark = pytest.mark.timeout(120)

CLIENTS = ("127.0.0.2", "127.0.0.3", "127.0.0.4")
PROXY_PROTOCOL = {
    "WS_SUPERVISOR_SERVER_TRUSTED_PROXIES": PROXY_HOST,
    "WS_SUPERVISOR_SERVER_PROXY_PROTOCOL": "true",
}
TWO_HANDSHAKES = {  # per address and node, then one every 100 s
    "WS_SUPERVISOR_LIMITS_HANDSHAKES_PER_SECOND_PER_ADDRESS": "0.01",
    "WS_SUPERVISOR_LIMITS_HANDSHAKE_BURST_PER_ADDRESS": "2",
}


async def open_from(
    port: int, user: str, source: str, headers: Mapping[str, str] | None = None, **query: str
) -> ClientConnection:
    """A client bound to ``source``, admitted (its welcome read)."""
    params = "&".join(f"{k}={v}" for k, v in {"user_id": user, **query}.items())
    ws = await connect(
        f"ws://127.0.0.1:{port}/ws?{params}",
        local_addr=(source, 0),
        additional_headers=headers,
        open_timeout=10,
        close_timeout=2,
    )
    welcome = json.loads(await asyncio.wait_for(ws.recv(), 10))
    assert welcome["type"] == "welcome", welcome
    return ws


async def status_from(port: int, user: str, source: str) -> int:
    """101 if admitted (and closed again), else the status of the refusal."""
    try:
        ws = await open_from(port, user, source)
    except InvalidStatus as refused:
        return refused.response.status_code
    await ws.close()
    return 101


def clients_seen(nodes: list[Node]) -> list[tuple[str, str, str]]:
    """Every connection of every node's state dump: (node, client, proxy)."""
    seen = []
    for node in nodes:
        status, state = node.get("/debug/state")
        assert status == 200, state
        for user in state["users"]:
            for manager in user["managers"]:
                seen.append((node.node_id, manager.get("client"), manager.get("proxy")))
    return seen


async def every_server_up(proxy: HAProxy, backend: str = "nodes") -> None:
    await until(lambda: set(proxy.servers(backend).values()) == {"UP"}, 15, "servers UP")


def nodes_of(nodes: list[Node]) -> list[tuple[int, int]]:
    return [(node.port, node.admin_port) for node in nodes]


@pytest.mark.parametrize(
    "send_proxy", ["send-proxy-v2 proxy-v2-options crc32c", "send-proxy"], ids=["v2", "v1"]
)
@pytest.mark.asyncio
async def test_behind_a_tcp_balancer_every_node_sees_each_clients_own_address(
    redis_server: RedisServer, send_proxy: str
) -> None:
    with running_nodes(redis_server, env=PROXY_PROTOCOL) as nodes:
        front = free_port()
        config = tcp_config(front, nodes_of(nodes), send_proxy=send_proxy)
        with running_haproxy(config, front) as proxy:
            await every_server_up(proxy)
            opened = []
            for i, source in enumerate(CLIENTS * 3):
                ws = await open_from(front, f"u{i % 3}", source, thread_id=f"t{i}")
                await echoes(ws, f"hello {i}")
                opened.append(ws)
            seen = await off(clients_seen, nodes)
            per_node = collections.Counter(node for node, _, _ in seen)
            assert sorted(per_node.values()) == [3, 3, 3]  # round robin over the three
            assert sorted(client for _, client, _ in seen) == sorted(CLIENTS * 3)
            assert {proxy_seen for _, _, proxy_seen in seen} == {PROXY_HOST}
            for ws in opened:
                await ws.close()


@pytest.mark.asyncio
async def test_one_address_over_its_handshake_rate_gets_429_while_the_others_connect(
    redis_server: RedisServer,
) -> None:
    with running_nodes(redis_server, env={**PROXY_PROTOCOL, **TWO_HANDSHAKES}) as nodes:
        front = free_port()
        with running_haproxy(tcp_config(front, nodes_of(nodes)), front) as proxy:
            await every_server_up(proxy)
            greedy = [await status_from(front, f"g{i}", "127.0.0.2") for i in range(9)]
            # a burst of 2 per address on each of three nodes, round robin: 6 admitted
            assert collections.Counter(greedy) == {101: 6, 429: 3}, greedy
            for source in ("127.0.0.3", "127.0.0.4"):
                others = [await status_from(front, f"o{i}", source) for i in range(6)]
                assert others == [101] * 6, (source, others)


@pytest.mark.asyncio
async def test_without_a_trusted_proxy_every_client_pays_for_the_balancers_address(
    redis_server: RedisServer,
) -> None:
    with running_nodes(redis_server, env=TWO_HANDSHAKES) as nodes:
        front = free_port()
        with running_haproxy(tcp_config(front, nodes_of(nodes), send_proxy=""), front) as proxy:
            await every_server_up(proxy)
            greedy = [await status_from(front, f"g{i}", "127.0.0.2") for i in range(6)]
            other = [await status_from(front, f"o{i}", "127.0.0.3") for i in range(3)]
            assert (greedy, other) == ([101] * 6, [429] * 3)  # .3 pays for .2


@pytest.mark.parametrize(
    ("forwarded", "header"),
    [
        ("option forwardfor", "x-forwarded-for"),
        ("http-request add-header Forwarded for=%[src]", "forwarded"),
    ],
    ids=["x-forwarded-for", "forwarded"],
)
@pytest.mark.asyncio
async def test_behind_an_http_balancer_a_forged_forwarding_header_changes_nothing(
    redis_server: RedisServer, forwarded: str, header: str
) -> None:
    env = {
        "WS_SUPERVISOR_SERVER_TRUSTED_PROXIES": PROXY_HOST,
        "WS_SUPERVISOR_SERVER_FORWARDED_HEADER": header,
    }
    forged = {"X-Forwarded-For": "6.6.6.6", "Forwarded": "for=6.6.6.6"}
    with running_nodes(redis_server, env=env) as nodes:
        front = free_port()
        with running_haproxy(http_config(front, nodes_of(nodes), forwarded=forwarded), front):
            opened = [
                await open_from(front, f"h{i}", source, forged) for i, source in enumerate(CLIENTS)
            ]
            # straight to a node, around the balancer, with the same forged headers
            opened.append(await open_from(nodes[0].port, "direct", "127.0.0.5", forged))
            seen = await off(clients_seen, nodes)
            assert sorted((client, proxy) for _, client, proxy in seen) == [
                ("127.0.0.2", PROXY_HOST),
                ("127.0.0.3", PROXY_HOST),
                ("127.0.0.4", PROXY_HOST),
                ("127.0.0.5", None),
            ]
            for ws in opened:
                await ws.close()


@pytest.mark.asyncio
async def test_a_dead_node_leaves_the_rotation_and_redis_gone_everywhere_keeps_clients_coming(
    redis_server: RedisServer,
) -> None:
    with running_nodes(redis_server, env=PROXY_PROTOCOL) as nodes:
        front = free_port()
        with running_haproxy(tcp_config(front, nodes_of(nodes)), front) as proxy:
            await every_server_up(proxy)
            nodes[1].proc.kill()
            took = await until(
                lambda: proxy.servers("nodes")["n1"].startswith("DOWN"), 10, "n1 DOWN"
            )
            print(f"a SIGKILLed node was DOWN in HAProxy {took:.2f} s later")
            assert [await status_from(front, f"d{i}", "127.0.0.2") for i in range(4)] == [101] * 4

            redis_server.stop()  # every node turns not ready (/readyz 503), none stops working
            await until(
                lambda: all(s.startswith("DOWN") for s in proxy.servers("nodes").values()),
                10,
                "every node not ready",
            )
            admitted = [await status_from(front, f"f{i}", "127.0.0.3") for i in range(4)]
            assert admitted == [101] * 4  # through nodes_alive, under [redis] on_unavailable


def test_docs_cluster_shows_the_configurations_these_tests_run() -> None:
    text = (ROOT / "docs" / "CLUSTER.md").read_text()
    nodes = [(9001, 9101), (9002, 9102), (9003, 9103)]
    assert tcp_config(8080, nodes) in text, "docs/CLUSTER.md lacks the tcp configuration"
    http_part = "frontend ws\n" + http_config(8080, nodes).split("\nfrontend ws\n", 1)[1]
    assert http_part in text, "docs/CLUSTER.md lacks the http configuration"
