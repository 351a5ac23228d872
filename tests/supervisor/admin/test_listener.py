"""The admin listener over real HTTP, in front of a real supervision tree."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import queue
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import attrs
import pytest

from actors.clock import SystemClock
from actors.context import UserExecutionContext
from actors.ports import Admission, QueuePort
from actors.tree import SupervisionTree
from supervisor.admin.backend import TreeAdminBackend
from supervisor.admin.fanout import FanoutObserver
from supervisor.admin.listener import AdminServer
from supervisor.admin.metrics import MetricsObserver
from supervisor.admin.page import PAGE_HEADERS, load_page
from supervisor.admin.readiness import Readiness
from supervisor.front.protocol import MAX_DEPTH
from tests.helpers import bearer_status, connect, make_config

pytestmark = pytest.mark.asyncio

T = TypeVar("T")
TOKEN = "s3cret-token"
ROUTES = [("GET", "/metrics"), ("GET", "/healthz"), ("GET", "/readyz"), ("GET", "/debug/state")]


@attrs.define
class Node:
    tree: SupervisionTree
    metrics: MetricsObserver
    readiness: Readiness
    server: AdminServer


@attrs.frozen
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


async def off_loop(function: Callable[[], T]) -> T:
    return await asyncio.get_running_loop().run_in_executor(None, function)


@contextlib.asynccontextmanager
async def admin_node(token: str | None = None, read_timeout: float = 10.0) -> AsyncIterator[Node]:
    """A started tree with metrics and readiness, and an admin server on an ephemeral port."""
    metrics = MetricsObserver()
    readiness = Readiness(SystemClock())
    tree = SupervisionTree(make_config(), observer=FanoutObserver(metrics, readiness))
    await off_loop(tree.start)
    backend = TreeAdminBackend(tree, metrics, readiness)
    server = AdminServer("127.0.0.1", 0, backend, token, read_timeout=read_timeout)
    try:
        await server.start()
        yield Node(tree, metrics, readiness, server)
    finally:
        await server.close()
        await off_loop(tree.stop)


async def exchange(port: int, raw: bytes, timeout: float = 5.0) -> Answer:
    """Send raw bytes, read until the server closes, parse the answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(raw)
        data = await asyncio.wait_for(reader.read(), timeout)
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    return parse(data)


def parse(data: bytes) -> Answer:
    head, sep, body = data.partition(b"\r\n\r\n")
    assert sep, f"no complete answer: {data!r}"
    lines = head.decode("latin-1").split("\r\n")
    version, status, _ = lines[0].split(" ", 2)
    assert version == "HTTP/1.1"
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    assert int(headers["content-length"]) == len(body)
    assert headers["connection"] == "close"
    return Answer(int(status), headers, body)


async def request(
    node: Node,
    method: str,
    path: str,
    body: bytes | None = None,
    *,
    token: str | None = None,
    headers: dict[str, str] | None = None,
) -> Answer:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"]
    if token is not None:
        lines.append(f"Authorization: Bearer {token}")
    if body is not None:
        lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    raw = ("\r\n".join(lines) + "\r\n\r\n").encode() + (body or b"")
    return await exchange(node.server.port, raw)


async def push(node: Node, payload: Any, token: str | None = None) -> Answer:
    return await request(node, "POST", "/v1/push", json.dumps(payload).encode(), token=token)


async def connect_off_loop(
    tree: SupervisionTree, user_id: str, thread_id: str | None = None
) -> tuple[Admission, QueuePort, UserExecutionContext]:
    admission, port, context = await off_loop(lambda: connect(tree, user_id, thread_id))
    assert admission.admitted, admission
    return admission, port, context


def drain_frames(port: QueuePort) -> list[str]:
    frames = []
    with contextlib.suppress(queue.Empty):
        while True:
            frames.append(port.frames.get_nowait())
    return frames


# --- the routes ---------------------------------------------------------------------------------


async def test_metrics_are_prometheus_text() -> None:
    async with admin_node() as node:
        await connect_off_loop(node.tree, "alice")
        answer = await request(node, "GET", "/metrics")
    assert answer.status == 200
    assert answer.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    text = answer.body.decode()
    assert 'ws_supervisor_admissions_total{result="admitted"} 1.0' in text


async def test_healthz_counts_users_and_managers() -> None:
    async with admin_node() as node:
        await connect_off_loop(node.tree, "alice")
        await connect_off_loop(node.tree, "alice")
        await connect_off_loop(node.tree, "bob")
        answer = await request(node, "GET", "/healthz")
    assert (answer.status, answer.json()) == (200, {"status": "ok", "users": 2, "managers": 3})
    assert answer.headers["content-type"] == "application/json"


async def test_readyz_is_ready_then_not_while_draining() -> None:
    async with admin_node() as node:
        ready = await request(node, "GET", "/readyz")
        assert (ready.status, ready.json()) == (200, {"ready": True})
        node.readiness.set_draining(True)
        draining = await request(node, "GET", "/readyz")
        assert (draining.status, draining.json()) == (
            503,
            {"ready": False, "reasons": ["draining"]},
        )
        node.readiness.set_draining(False)
        assert (await request(node, "GET", "/readyz")).status == 200


async def test_debug_state_is_the_snapshot() -> None:
    async with admin_node() as node:
        _, _, context = await connect_off_loop(node.tree, "alice")
        answer = await request(node, "GET", "/debug/state?pretty=0")
    assert answer.status == 200
    state = answer.json()
    assert set(state) == {"root", "users"}
    assert state["root"]["node_used"] == 1
    [alice] = state["users"]
    assert alice["user_id"] == "alice"
    assert [m["isolation_key"] for m in alice["managers"]] == [context.isolation_key]


async def test_a_real_http_client_reads_every_route() -> None:
    async with admin_node() as node:
        base = f"http://127.0.0.1:{node.server.port}"

        def get(path: str) -> tuple[int, bytes]:
            with urllib.request.urlopen(base + path, timeout=5) as response:
                return response.status, response.read()

        for _, path in ROUTES:
            status, body = await off_loop(functools.partial(get, path))
            assert status == 200, (path, body)


# --- push -----------------------------------------------------------------------------------------


async def test_push_reaches_only_the_named_thread() -> None:
    async with admin_node() as node:
        _, first, first_ctx = await connect_off_loop(node.tree, "alice")
        _, second, _ = await connect_off_loop(node.tree, "alice")
        _, bobs, bob_ctx = await connect_off_loop(node.tree, "bob")
        message = {"type": "notice", "n": [1, 2], "text": "héllo"}
        answer = await push(
            node, {"user_id": "alice", "thread_id": first_ctx.thread_id, "message": message}
        )
        assert (answer.status, answer.json()) == (200, {"delivered": 1})
        frame = await off_loop(lambda: first.frames.get(timeout=2))
        assert json.loads(frame) == message
        assert frame == json.dumps(message, separators=(",", ":"), ensure_ascii=False)
        # another user's thread: nothing is delivered to anyone
        other = await push(
            node, {"user_id": "alice", "thread_id": bob_ctx.thread_id, "message": "x"}
        )
        assert (other.status, other.json()) == (200, {"delivered": 0})
        # no thread: every connection of the user
        everyone = await push(node, {"user_id": "alice", "thread_id": None, "message": 7})
        assert (everyone.status, everyone.json()) == (200, {"delivered": 2})
        await off_loop(lambda: second.frames.get(timeout=2))
        await asyncio.sleep(0.1)
        assert drain_frames(first) == ["7"]
        assert drain_frames(second) == []
        assert drain_frames(bobs) == []


async def test_a_push_nested_to_the_frame_limit_is_delivered_and_a_deeper_one_is_400_unlogged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with admin_node() as node:
        _, port, _ = await connect_off_loop(node.tree, "alice")
        at_limit: Any = 1
        for _ in range(MAX_DEPTH):
            at_limit = [at_limit]
        answer = await push(node, {"user_id": "alice", "message": at_limit})
        assert (answer.status, answer.json()) == (200, {"delivered": 1})
        assert json.loads(await off_loop(lambda: port.frames.get(timeout=2))) == at_limit
        with caplog.at_level(logging.DEBUG, logger="supervisor"):
            for depth in (MAX_DEPTH + 1, 2000, 30000):  # past the recursion limit too
                body = b'{"user_id": "alice", "message": ' + b"[" * depth + b"]" * depth + b"}"
                deep = await request(node, "POST", "/v1/push", body)
                assert deep.status == 400, depth
                assert deep.json() == {"error": f"message nested deeper than {MAX_DEPTH} levels"}
        assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []
        assert drain_frames(port) == []


async def test_push_to_an_unknown_user_delivers_nothing() -> None:
    async with admin_node() as node:
        answer = await push(node, {"user_id": "nobody", "message": {"a": 1}})
    assert (answer.status, answer.json()) == (200, {"delivered": 0})


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "body is not valid JSON: Expecting property name"),
        (b"", "body is not valid JSON: Expecting value"),
        (b"\xff\xfe", "body is not UTF-8"),
        (b'{"user_id": "a", "message": NaN}', "body is not valid JSON: NaN is not valid JSON"),
        (b"[1, 2]", "body must be a JSON object"),
        (b'{"message": 1}', "missing field: user_id"),
        (b'{"user_id": 5, "message": 1}', "user_id must be a string"),
        (b'{"user_id": "a", "thread_id": 3, "message": 1}', "thread_id must be a string"),
        (b'{"user_id": "a"}', "missing field: message"),
        (b'{"user_id": "a", "message": 1, "extra": 2}', "unknown field: extra"),
        (b'{"user_id": "alice:t1", "message": 1}', "invalid user_id: may hold only ASCII"),
        (b'{"user_id": "", "message": 1}', "invalid user_id: must not be empty"),
        (b'{"user_id": "a", "thread_id": "t:x", "message": 1}', "invalid thread_id: may hold"),
        (b'{"user_id": "a", "message": ' + b"[" * 33 + b"]" * 33 + b"}", "message nested deeper"),
        (b'{"user_id": "a", "message": ' + b"[" * 5000 + b"]" * 5000 + b"}", "message nested"),
        (b'{"user_id": "a", "message": ' + b'{"k":' * 3000 + b"1" + b"}" * 3001, "message nested"),
    ],
)
async def test_a_bad_push_is_400_naming_the_problem(body: bytes, message: str) -> None:
    async with admin_node() as node:
        answer = await request(node, "POST", "/v1/push", body)
    assert answer.status == 400, answer
    error = answer.json()["error"]
    assert error.startswith(message), error


# --- errors -------------------------------------------------------------------------------------


async def test_an_unknown_path_is_404() -> None:
    async with admin_node() as node:
        answer = await request(node, "GET", "/nope")
    assert (answer.status, answer.json()) == (404, {"error": "no such path: /nope"})


async def test_a_wrong_method_is_405_with_allow() -> None:
    async with admin_node() as node:
        post = await request(node, "POST", "/metrics", b"{}")
        get = await request(node, "GET", "/v1/push")
    assert post.status == 405 and post.headers["allow"] == "GET"
    assert post.json() == {"error": "method POST not allowed on /metrics; use GET"}
    assert get.status == 405 and get.headers["allow"] == "POST"


@pytest.mark.parametrize(
    ("raw", "status", "message"),
    [
        (b"GARBAGE\r\n\r\n", 400, "malformed request line"),
        (b"GET /healthz HTTP/2.0\r\n\r\n", 505, "unsupported HTTP version"),
        (b"GET http://x/healthz HTTP/1.1\r\n\r\n", 400, "request target must be a path"),
        (b"GET /healthz HTTP/1.1\r\nNoColon\r\n\r\n", 400, "malformed header line"),
        (b"POST /v1/push HTTP/1.1\r\nContent-Length: -3\r\n\r\n", 400, "bad Content-Length"),
        (
            b"POST /v1/push HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            400,
            "duplicate Content-Length header",
        ),
        (
            b"POST /v1/push HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            411,
            "Transfer-Encoding is not supported",
        ),
    ],
)
async def test_a_malformed_request_is_answered_not_crashed(
    raw: bytes, status: int, message: str
) -> None:
    async with admin_node() as node:
        answer = await exchange(node.server.port, raw)
        assert answer.status == status
        assert answer.json()["error"].startswith(message)
        assert (await request(node, "GET", "/healthz")).status == 200


async def test_an_oversized_body_is_413() -> None:
    async with admin_node() as node:
        body = b'{"user_id": "alice", "message": "' + b"x" * 70_000 + b'"}'
        answer = await request(node, "POST", "/v1/push", body)
        assert answer.status == 413
        assert answer.json() == {"error": f"body of {len(body)} bytes exceeds the limit of 65536"}
        # just under the limit is read in full
        fits = b'{"user_id": "alice", "message": "' + b"x" * 65_000 + b'"}'
        assert (await request(node, "POST", "/v1/push", fits)).json() == {"delivered": 0}


async def test_oversized_headers_are_431() -> None:
    async with admin_node() as node:
        answer = await request(node, "GET", "/healthz", headers={"X-Big": "y" * 9_000})
        assert answer.status == 431
        assert answer.json() == {"error": "request line and headers exceed 8192 bytes"}


async def test_a_stalled_client_is_cut_off_and_others_are_served() -> None:
    async with admin_node(read_timeout=0.5) as node:
        loop = asyncio.get_running_loop()
        reader, writer = await asyncio.open_connection("127.0.0.1", node.server.port)
        writer.write(b'POST /v1/push HTTP/1.1\r\nContent-Length: 100\r\n\r\n{"user')
        started = loop.time()
        for _ in range(3):  # served while the stalled one waits
            assert (await request(node, "GET", "/readyz")).status == 200
        data = await asyncio.wait_for(reader.read(), 5)
        elapsed = loop.time() - started
        writer.close()
        await writer.wait_closed()
        answer = parse(data)
        assert (answer.status, answer.json()) == (
            408,
            {"error": "request not received within 0.5s"},
        )
        assert 0.3 < elapsed < 3
        assert (await request(node, "GET", "/healthz")).status == 200


async def test_a_client_that_never_finishes_its_headers_is_cut_off() -> None:
    async with admin_node(read_timeout=0.3) as node:
        reader, writer = await asyncio.open_connection("127.0.0.1", node.server.port)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        answer = parse(await asyncio.wait_for(reader.read(), 5))
        writer.close()
        await writer.wait_closed()
        assert answer.status == 408


async def test_a_backend_that_raises_is_500_without_a_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with admin_node() as node:
        backend = node.server.backend
        assert isinstance(backend, TreeAdminBackend)

        async def broken() -> tuple[bool, list[str]]:
            raise ZeroDivisionError("secret detail")

        backend.readiness = broken  # type: ignore[method-assign]
        with caplog.at_level(logging.ERROR, logger="supervisor.admin.listener"):
            answer = await request(node, "GET", "/readyz")
    assert (answer.status, answer.json()) == (500, {"error": "internal error"})
    assert b"secret" not in answer.body and b"Traceback" not in answer.body
    assert "admin GET /readyz failed" in caplog.text
    assert "ZeroDivisionError" in caplog.text


async def test_a_stopped_tree_is_503_everywhere_but_metrics() -> None:
    async with admin_node() as node:
        await off_loop(node.tree.stop)
        health = await request(node, "GET", "/healthz")
        ready = await request(node, "GET", "/readyz")
        state = await request(node, "GET", "/debug/state")
        pushed = await push(node, {"user_id": "alice", "message": 1})
        metrics = await request(node, "GET", "/metrics")
    not_running = "the supervision tree is not running"
    assert (health.status, health.json()) == (503, {"status": "unavailable", "error": not_running})
    assert (ready.status, ready.json()) == (
        503,
        {"ready": False, "reasons": ["supervision tree not running"]},
    )
    assert (state.status, state.json()) == (503, {"error": not_running})
    assert (pushed.status, pushed.json()) == (503, {"error": not_running})
    assert metrics.status == 200


# --- the token ------------------------------------------------------------------------------------


async def test_with_a_token_every_route_needs_it() -> None:
    async with admin_node(token=TOKEN) as node:
        for method, path in [*ROUTES, ("POST", "/v1/push"), ("GET", "/nope")]:
            body = b'{"user_id": "alice", "message": 1}' if method == "POST" else None
            missing = await request(node, method, path, body)
            assert missing.status == 401, path
            assert missing.headers["www-authenticate"].startswith("Bearer")
            assert missing.json() == {"error": "missing bearer token"}
            wrong = await request(node, method, path, body, token=TOKEN + "x")
            assert (wrong.status, wrong.json()) == (401, {"error": "wrong bearer token"}), path
            basic = await request(node, method, path, body, headers={"Authorization": "Basic eA=="})
            assert basic.status == 401
            assert basic.json() == {"error": "Authorization must be 'Bearer <token>'"}
            right = await request(node, method, path, body, token=TOKEN)
            assert right.status == (404 if path == "/nope" else 200), (path, right)


async def test_the_page_is_served_without_the_token_and_holds_no_data() -> None:
    page = load_page()
    async with admin_node(token=TOKEN) as node:
        await off_loop(lambda: connect(node.tree, "alice"))
        for path, asset in page.items():
            answer = await request(node, "GET", path)
            assert (answer.status, answer.body) == (200, asset.body), path
            assert answer.headers["content-type"] == asset.content_type
            assert answer.headers["cache-control"] == "no-store"
            for name, value in PAGE_HEADERS:
                assert answer.headers[name.lower()] == value, (path, name)
            assert b"alice" not in answer.body
        assert (await request(node, "GET", "/debug/state")).status == 401


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/ui/../debug/state"),
        ("GET", "/ui/./ui.js"),
        ("GET", "/ui//"),
        ("GET", "/UI"),
        ("GET", "/ui/index.html"),
        ("GET", "/ui/ui.js/"),
        ("POST", "/ui"),
    ],
)
async def test_only_a_get_of_the_pages_exact_paths_goes_without_the_token(
    method: str, path: str
) -> None:
    async with admin_node(token=TOKEN) as node:
        assert (
            await request(node, method, path, b"{}" if method == "POST" else None)
        ).status == 401
        with_token = await request(
            node, method, path, b"{}" if method == "POST" else None, token=TOKEN
        )
        assert with_token.status == (405 if method == "POST" else 404)


async def test_without_a_token_configured_the_page_is_served_as_every_route() -> None:
    async with admin_node() as node:
        answer = await request(node, "GET", "/ui/ui.js")
        assert answer.status == 200 and answer.body == load_page()["/ui/ui.js"].body


async def test_a_token_works_from_a_real_http_client() -> None:
    async with admin_node(token=TOKEN) as node:
        url = f"http://127.0.0.1:{node.server.port}/debug/state"
        assert await off_loop(lambda: bearer_status(url)) == 401
        assert await off_loop(lambda: bearer_status(url, "nope")) == 401
        assert await off_loop(lambda: bearer_status(url, TOKEN)) == 200


# --- closing --------------------------------------------------------------------------------------


async def test_after_close_nothing_listens_and_no_task_is_left() -> None:
    async with admin_node() as node:
        port = node.server.port
        assert (await request(node, "GET", "/healthz")).status == 200
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /healthz HTTP/1.1\r\n")  # half a request, open at close
        await asyncio.sleep(0.05)
        await node.server.close()
        assert await asyncio.wait_for(reader.read(), 2) == b""  # cut off
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        with pytest.raises(OSError):
            await asyncio.open_connection("127.0.0.1", port)
        assert [t for t in asyncio.all_tasks() if t is not asyncio.current_task()] == []
        await node.server.close()  # twice is fine


async def test_a_slow_tree_never_blocks_the_loop() -> None:
    async with admin_node() as node:
        real = node.tree.snapshot

        def slow(timeout: float = 2.0) -> dict[str, Any]:
            time.sleep(0.5)
            return real(timeout)

        node.tree.snapshot = slow  # type: ignore[method-assign]
        loop = asyncio.get_running_loop()
        started = loop.time()
        health = asyncio.create_task(request(node, "GET", "/healthz"))
        await asyncio.sleep(0.05)
        assert (await request(node, "GET", "/readyz")).status == 200
        assert loop.time() - started < 0.4  # answered while the snapshot was still running
        assert (await health).status == 200


async def test_expect_100_continue_is_answered_before_the_body() -> None:
    async with admin_node() as node:
        reader, writer = await asyncio.open_connection("127.0.0.1", node.server.port)
        body = b'{"user_id": "alice", "message": 1}'
        writer.write(
            b"POST /v1/push HTTP/1.1\r\nExpect: 100-continue\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
        )
        interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 2)
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
        writer.write(body)
        answer = parse(await asyncio.wait_for(reader.read(), 5))
        writer.close()
        await writer.wait_closed()
        assert (answer.status, answer.json()) == (200, {"delivered": 0})


async def test_a_non_ascii_content_length_is_400() -> None:
    async with admin_node() as node:
        answer = await exchange(
            node.server.port,
            "POST /v1/push HTTP/1.1\r\nContent-Length: ²\r\n\r\n".encode("latin-1"),
        )
        assert (answer.status, answer.json()) == (400, {"error": "bad Content-Length: '²'"})


async def test_a_listener_on_a_unix_socket_answers_there_and_has_no_port(tmp_path: Any) -> None:
    metrics = MetricsObserver()
    readiness = Readiness(SystemClock())
    tree = SupervisionTree(make_config(), observer=FanoutObserver(metrics, readiness))
    await off_loop(tree.start)
    path = str(tmp_path / "admin.sock")
    server = AdminServer(
        "127.0.0.1", 0, TreeAdminBackend(tree, metrics, readiness), None, path=path
    )
    try:
        await server.start()
        reader, writer = await asyncio.open_unix_connection(path)
        writer.write(b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = await asyncio.wait_for(reader.read(), 5)
        writer.close()
        assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
        assert answer.endswith(b'{"ready": true}')
        assert server.port == 0
    finally:
        await server.close()
        await off_loop(tree.stop)
