"""The state dump: reading it from the admin listener and drawing it as a tree."""

from __future__ import annotations

import asyncio
import re
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import pytest

from actors.errors import WsSupervisorError
from actors.tree import SupervisionTree
from supervisor.admin.dump import fetch_cluster, fetch_state, render_cluster, render_state
from supervisor.admin.listener import AdminServer
from supervisor.cluster.push_tally import PushAnswer
from supervisor.errors import BackendUnavailable
from tests.helpers import connect, handle_of, make_config

T = TypeVar("T")
ANSI = re.compile(r"\x1b\[[0-9;]*m")
NOW = 1_700_000_100.0


def _snapshot_of_two_users() -> tuple[dict[str, Any], dict[str, list[str]]]:
    """A real tree with alice (3 connections, warning) and bob (1); its snapshot."""
    ids: dict[str, list[str]] = {"alice": [], "bob": []}
    with SupervisionTree(make_config(), node_id="node-7") as tree:
        for user in ["alice", "alice", "alice", "bob"]:
            admission, port, context = connect(tree, user)
            ids[user] += [context.websocket_id, context.thread_id]
            if user == "bob":
                handle_of(admission).deliver("hello")
                assert port.frames.get(timeout=2) == "hello"
        snapshot = tree.snapshot()
    return snapshot, ids


def test_a_real_snapshot_renders_as_a_plain_tree() -> None:
    snapshot, ids = _snapshot_of_two_users()
    text = render_state(snapshot, color=False)
    assert "\x1b" not in text
    lines = text.splitlines()
    assert re.fullmatch(r"node node-7  ok  4/\d+  users 2  threads \d+  alerts 1", lines[0])
    assert re.fullmatch(r"├── alice  3/5  warning  pool 0  restarts 0", lines[1])
    for line in lines[2:4]:
        assert line.startswith("│   ├── ws_")
    assert lines[4].startswith("│   └── ws_")
    assert re.fullmatch(r"└── bob    1/5  ok       pool 0  restarts 0", lines[5])
    assert lines[6].startswith("    └── ws_")
    assert re.search(r"  connected  in 1 out 1  idle \d+\.\ds$", lines[6])
    for index, user in [(2, "alice"), (3, "alice"), (4, "alice"), (6, "bob")]:
        websocket_id, thread_id = lines[index][8:].split()[:2]
        assert websocket_id in ids[user] and thread_id in ids[user]
    assert lines[7] == ""
    assert re.fullmatch(r"alert \d\d:\d\d:\d\d  user alice  ok → warning", lines[8])
    assert len(lines) == 9


def test_color_marks_the_levels_and_changes_nothing_else() -> None:
    snapshot, _ = _snapshot_of_two_users()
    plain = render_state(snapshot, color=False, now=NOW)
    colored = render_state(snapshot, color=True, now=NOW)
    assert "\x1b[33mwarning\x1b[0m" in colored
    assert ANSI.sub("", colored) == plain


def _manager(**fields: Any) -> dict[str, Any]:
    base = {
        "isolation_key": "u:thread_1",
        "websocket_id": "ws_1",
        "thread_id": "thread_1",
        "run_id": "run_1",
        "state": "connected",
        "holds_slot": True,
        "connected_at": NOW - 100,
        "last_activity": NOW - 3.24,
        "messages_in": 4,
        "messages_out": 4,
        "outbound_queued": 0,
        "restarts": 0,
    }
    return {**base, **fields}


def _user(user_id: str, level: str, managers: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {
        "user_id": user_id,
        "used": len(managers),
        "limit": 20,
        "level": level,
        "pool_idle": 1,
        "restarts": 0,
        "managers": managers,
        **extra,
    }


def _state(users: list[dict[str, Any]], node_level: str = "ok") -> dict[str, Any]:
    root = {"node_level": node_level, "node_used": 7, "node_limit": 100, "node_id": "n1"}
    return {"root": {**root, "threads": 12, "alerts": []}, "users": users}


def test_managers_show_ids_state_counters_and_idle_time() -> None:
    closing = _manager(
        websocket_id="ws_22",
        thread_id="thread_two",
        state="closing",
        holds_slot=False,
        outbound_queued=5,
        restarts=2,
    )
    text = render_state(_state([_user("alice", "ok", [_manager(), closing])]), False, now=NOW)
    assert text.splitlines() == [
        "node n1  ok  7/100  users 1  threads 12  alerts 0",
        "└── alice  2/20  ok  pool 1  restarts 0",
        "    ├── ws_1   thread_1    connected  in 4 out 4  idle 3.2s",
        "    └── ws_22  thread_two  closing  in 4 out 4  idle 3.2s  queued 5  restarts 2  no slot",
    ]


def test_a_managers_client_address_is_shown_with_the_proxy_it_came_through() -> None:
    proxied = _manager(client="127.0.0.2", proxy="127.0.0.9")
    direct = _manager(websocket_id="ws_2", client="127.0.0.5")
    text = render_state(_state([_user("alice", "ok", [proxied, direct])]), False, now=NOW)
    assert text.splitlines()[2:] == [
        "    ├── ws_1  thread_1  connected  in 4 out 4  idle 3.2s  from 127.0.0.2 via 127.0.0.9",
        "    └── ws_2  thread_1  connected  in 4 out 4  idle 3.2s  from 127.0.0.5",
    ]


@pytest.mark.parametrize(
    ("level", "code"),
    [("warning", "\x1b[33m"), ("critical", "\x1b[31m"), ("emergency", "\x1b[1;7;31m")],
)
def test_each_level_has_its_color(level: str, code: str) -> None:
    text = render_state(_state([_user("alice", level, [])], node_level=level), True, now=NOW)
    assert text.count(f"{code}{level}\x1b[0m") == 2  # the node and the user
    assert level in render_state(_state([_user("alice", level, [])]), False, now=NOW)


def test_a_user_that_did_not_answer_shows_its_error() -> None:
    late = {"user_id": "carol", "error": "no answer in time", "managers": [], "level": "critical"}
    text = render_state(_state([_user("alice", "ok", []), late]), False, now=NOW)
    assert text.splitlines()[2] == "└── carol  ?/?   critical  error: no answer in time"


def test_a_daemon_of_several_workers_has_a_line_for_each_before_its_users() -> None:
    state = _state([])
    state["workers"] = [
        {
            "worker_id": 0,
            "pid": 41,
            "node_id": "n1-w0",
            "restarts": 0,
            "serving": True,
            "root": {"node_used": 3, "node_limit": 50, "threads": 6},
            "users": [{**_user("alice", "ok", []), "worker": 0}],
        },
        {
            "worker_id": 1,
            "pid": None,
            "node_id": "n1-w1-2",
            "restarts": 2,
            "serving": False,
            "error": "restarting",
        },
    ]
    assert render_state(state, False, now=NOW).splitlines()[:4] == [
        "node n1  ok  7/100  users 1  threads 12  alerts 0",
        "worker 0  serving  pid 41  node n1-w0  used 3/50  users 1  threads 6  restarts 0",
        "worker 1  down  pid -  node n1-w1-2  error: restarting  restarts 2",
        "└── alice  0/20  ok  pool 1  restarts 0",
    ]


def test_an_empty_tree_is_one_line() -> None:
    assert render_state(_state([]), False) == "node n1  ok  7/100  users 0  threads 12  alerts 0"


# --- fetching -----------------------------------------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def test_a_closed_port_is_a_clear_error() -> None:
    port = _closed_port()
    with pytest.raises(WsSupervisorError) as raised:
        fetch_state(f"http://127.0.0.1:{port}", None, timeout=2)
    message = str(raised.value)
    assert message.startswith(f"cannot read http://127.0.0.1:{port}/debug/state: ")
    assert "connection refused" in message


def test_only_http_urls_are_read() -> None:
    with pytest.raises(WsSupervisorError, match="the admin URL must be http:// or https://"):
        fetch_state("file:///etc", None)


class _Backend:
    """A fixed state for the admin server."""

    def __init__(self, state: dict[str, Any], cluster: dict[str, Any] | None = None) -> None:
        self._state = state
        self._cluster = cluster

    async def metrics_text(self) -> bytes:
        return b""

    async def health(self) -> tuple[bool, dict[str, Any]]:
        return True, {"status": "ok"}

    async def readiness(self) -> tuple[bool, list[str]]:
        return True, []

    async def state(self) -> dict[str, Any]:
        return self._state

    async def push(self, user_id: str, thread_id: str | None, message: Any) -> PushAnswer:
        return PushAnswer(0, {})

    async def cluster(self) -> dict[str, Any]:
        if self._cluster is None:
            raise BackendUnavailable("no cluster ledger")
        return self._cluster


@asynccontextmanager
async def _admin(
    state: dict[str, Any], token: str | None = None, cluster: dict[str, Any] | None = None
) -> AsyncIterator[str]:
    server = AdminServer("127.0.0.1", 0, _Backend(state, cluster), token)
    await server.start()
    try:
        yield f"http://127.0.0.1:{server.port}/"
    finally:
        await server.close()


async def _off_loop(function: Callable[[], T]) -> T:
    return await asyncio.get_running_loop().run_in_executor(None, function)


async def _fetch_error(url: str, token: str | None = None, timeout: float = 5.0) -> str:
    with pytest.raises(WsSupervisorError) as raised:
        await _off_loop(lambda: fetch_state(url, token, timeout))
    return str(raised.value)


@pytest.mark.asyncio
async def test_fetch_state_reads_the_dump_with_its_token() -> None:
    state = _state([_user("alice", "ok", [_manager()])])
    async with _admin(state, token="t0k") as url:
        assert await _off_loop(lambda: fetch_state(url, "t0k")) == state
        missing = await _fetch_error(url)
        wrong = await _fetch_error(url, "nope")
    assert missing == (
        f"cannot read {url}debug/state: HTTP 401 Unauthorized: missing bearer token"
        " (pass the admin token with --token-env)"
    )
    assert wrong == f"cannot read {url}debug/state: HTTP 401 Unauthorized: wrong bearer token"


@pytest.mark.asyncio
async def test_an_answer_that_is_not_a_dump_is_refused() -> None:
    async with _admin({"hello": 1}) as url:
        message = await _fetch_error(url)
    assert message == f"cannot read {url}debug/state: the answer is not a state dump"


@pytest.mark.asyncio
async def test_an_answer_that_is_not_json_or_never_comes_is_refused() -> None:
    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\n<html")
        await writer.drain()
        writer.close()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()
        writer.close()

    for handler, expected in [(garbage, "the answer is not JSON"), (silent, "no answer within")]:
        server = await asyncio.start_server(handler, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            message = await _fetch_error(f"http://127.0.0.1:{port}", timeout=0.3)
        finally:
            server.close()
            await server.wait_closed()
        assert message.startswith(f"cannot read http://127.0.0.1:{port}/debug/state: {expected}")


# --- the cluster view ---------------------------------------------------------------


def _cluster() -> dict[str, Any]:
    def slot(key: str, node: str, ws: str, acquired: int) -> dict[str, Any]:
        return {
            "key": key,
            "node_id": node,
            "websocket_id": ws,
            "acquired_ms": acquired,
            "lease_left": 2.5,
        }

    return {
        "node_id": "n1",
        "users": [
            {
                "user_id": "alice",
                "slots": [slot("alice:t1", "n1", "w1", 1), slot("alice:t2", "n2", "w2", 2)],
            },
            {"user_id": "bob", "slots": [slot("bob:t1", "n3", "w3", 3)]},
        ],
    }


def test_the_cluster_view_lists_each_users_slots_with_their_nodes() -> None:
    assert render_cluster(_cluster()).splitlines() == [
        "cluster ledger, read by node n1: 2 user(s)",
        "alice  2 slot(s) on n1, n2",
        "├── alice:t1  node n1  w1  lease 2.5s",
        "└── alice:t2  node n2  w2  lease 2.5s",
        "bob  1 slot(s) on n3",
        "└── bob:t1  node n3  w3  lease 2.5s",
    ]


def test_the_cluster_view_of_one_user_shows_only_that_user() -> None:
    lines = render_cluster(_cluster(), "bob").splitlines()
    assert lines[1:] == ["bob  1 slot(s) on n3", "└── bob:t1  node n3  w3  lease 2.5s"]
    assert render_cluster(_cluster(), "carol").splitlines()[-1] == "carol: no slots on any node"


def test_a_redis_node_shows_each_users_cluster_count_beside_its_own() -> None:
    state = _state([_user("alice", "ok", [_manager()], cluster_used=4)])
    state["root"]["ledger"] = "redis"
    assert "cluster 4/20" in render_state(state, color=False)
    state["root"]["ledger"] = "memory"
    assert "cluster" not in render_state(state, color=False)


@pytest.mark.asyncio
async def test_fetch_cluster_reads_the_view_or_says_why_not() -> None:
    async with _admin(_state([]), cluster=_cluster()) as url:
        assert await _off_loop(lambda: fetch_cluster(url, None)) == _cluster()
    async with _admin(_state([])) as url:
        with pytest.raises(WsSupervisorError) as raised:
            await _off_loop(lambda: fetch_cluster(url, None))
    assert str(raised.value) == (
        f"cannot read {url}debug/cluster: HTTP 503 Service Unavailable: no cluster ledger"
    )
