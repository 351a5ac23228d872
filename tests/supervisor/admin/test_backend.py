"""The admin backend on a real tree: health, readiness, state, push and the cluster's view.

No HTTP here (the listener's tests serve these answers); every call is made on
the test's event loop, as the listener makes it.
"""

from __future__ import annotations

import contextlib
import functools
import queue
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from actors.clock import SystemClock
from actors.errors import InvalidIdError
from actors.tree import SupervisionTree
from supervisor.admin.backend import TreeAdminBackend, cluster_view
from supervisor.admin.fanout import FanoutObserver
from supervisor.admin.metrics import MetricsObserver
from supervisor.admin.readiness import Readiness
from supervisor.cluster.ledger import RedisLedger, connect
from supervisor.cluster.push_tally import PushAnswer
from supervisor.config.schema import RedisConfig
from supervisor.errors import BackendUnavailable
from supervisor.front.bridge import off_loop
from tests.actors.probes import Blocker
from tests.cluster.redis_server import RedisServer
from tests.helpers import connect as admit
from tests.helpers import make_config
from tests.supervisor.cluster.test_push import Node

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(30)]

NOT_RUNNING = "the supervision tree is not running"


@contextlib.contextmanager
def supervisors_held(tree: SupervisionTree) -> Iterator[None]:
    """The root and the supervisors' one worker blocked for the block: the tree cannot answer."""
    assert tree.system_dispatcher.workers == 1
    release = Blocker.hold(tree.system_dispatcher)  # returns once the worker is held
    try:
        yield
    finally:
        release.set()


@contextlib.asynccontextmanager
async def backend_of_a_tree(
    timeout: float = 2.0, shared_ledger: RedisLedger | None = None
) -> AsyncIterator[TreeAdminBackend]:
    metrics, readiness = MetricsObserver(), Readiness(SystemClock())
    tree = SupervisionTree(make_config(), observer=FanoutObserver(metrics, readiness))
    await off_loop(tree.start)
    try:
        yield TreeAdminBackend(
            tree, metrics, readiness, timeout=timeout, shared_ledger=shared_ledger
        )
    finally:
        await off_loop(tree.stop)


@pytest.fixture
def ledger(redis_server: RedisServer) -> Iterator[RedisLedger]:
    config = RedisConfig(url=redis_server.url)
    opened = RedisLedger(connect(config), "node-a", config, 100)
    yield opened
    opened.close()


async def connected(backend: TreeAdminBackend, user_id: str) -> Any:
    """A connection of ``user_id`` through a queue port; its port and context."""
    admission, port, context = await off_loop(lambda: admit(backend.tree, user_id))
    assert admission.admitted, admission
    return port, context


# --- health, readiness, state, metrics ------------------------------------------------------


async def test_health_counts_the_users_and_their_managers() -> None:
    async with backend_of_a_tree() as backend:
        for user in ("alice", "alice", "bob"):
            await connected(backend, user)
        assert await backend.health() == (True, {"status": "ok", "users": 2, "managers": 3})


async def test_a_stopped_tree_is_unhealthy_has_no_state_and_is_not_ready() -> None:
    async with backend_of_a_tree() as backend:
        await off_loop(backend.tree.stop)
        assert await backend.health() == (False, {"status": "unavailable", "error": NOT_RUNNING})
        with pytest.raises(BackendUnavailable, match=NOT_RUNNING):
            await backend.state()
        assert await backend.readiness() == (False, ["supervision tree not running"])


async def test_readiness_is_the_policy_s_answer_while_the_tree_runs() -> None:
    async with backend_of_a_tree() as backend:
        assert await backend.readiness() == (True, [])
        backend.readiness_policy.set_draining(True)
        assert await backend.readiness() == (False, ["draining"])


async def test_a_tree_that_does_not_answer_in_time_is_unavailable_not_a_hang() -> None:
    async with backend_of_a_tree(timeout=0.2) as backend:
        with supervisors_held(backend.tree):
            with pytest.raises(BackendUnavailable, match=r"did not answer within 0\.2s"):
                await backend.state()
            assert (await backend.health())[0] is False
            assert await backend.readiness() == (True, [])  # never asks the tree: always fast


async def test_the_state_is_the_tree_s_snapshot() -> None:
    async with backend_of_a_tree() as backend:
        _, context = await connected(backend, "alice")
        state = await backend.state()
    assert state["root"]["node_used"] == 1
    [alice] = state["users"]
    assert [m["isolation_key"] for m in alice["managers"]] == [context.isolation_key]


async def test_the_state_adds_each_connections_client_address_from_the_front() -> None:
    async with backend_of_a_tree() as backend:
        _, first = await connected(backend, "alice")
        _, second = await connected(backend, "alice")
        backend.clients = lambda: {
            first.websocket_id: {"client": "127.0.0.2", "proxy": "127.0.0.9"},
            "ws_gone": {"client": "127.0.0.7"},
        }
        state = await backend.state()
    managers = {m["websocket_id"]: m for m in state["users"][0]["managers"]}
    assert (managers[first.websocket_id]["client"], managers[first.websocket_id]["proxy"]) == (
        "127.0.0.2",
        "127.0.0.9",
    )
    assert "client" not in managers[second.websocket_id]  # admitted by no front of this node


async def test_the_metrics_text_is_the_observer_s_exposition() -> None:
    async with backend_of_a_tree() as backend:
        await connected(backend, "alice")
        text = await backend.metrics_text()
    assert text.startswith(b"# HELP ws_supervisor_")  # Prometheus text, of this node's registry
    assert b'ws_supervisor_admissions_total{result="admitted"} 1.0' in text


# --- push ---------------------------------------------------------------------------------


async def test_a_push_reaches_the_named_thread_as_compact_json_and_counts_it() -> None:
    async with backend_of_a_tree() as backend:
        port, context = await connected(backend, "alice")
        other, _ = await connected(backend, "alice")
        message = {"text": "héllo", "n": [1, 2]}
        node = backend.tree.node_id
        answer = await backend.push("alice", context.thread_id, message)
        assert answer == PushAnswer(1, {node: 1}, cluster="none")
        assert answer.as_json() == {"delivered": 1}  # a node of its own: the count alone
        frame = await off_loop(lambda: port.frames.get(timeout=2))
        assert frame == '{"text":"héllo","n":[1,2]}'
        assert (await backend.push("alice", None, 7)).delivered == 2
        assert (await backend.push("nobody", None, 7)).delivered == 0
        assert await off_loop(lambda: other.frames.get(timeout=2)) == "7"  # and only that
        assert await off_loop(lambda: port.frames.get(timeout=2)) == "7"
        with pytest.raises(queue.Empty):
            other.frames.get(timeout=0.05)


@pytest.mark.parametrize(("user", "thread"), [("alice:t", None), ("", None), ("alice", "t:x")])
async def test_a_push_with_a_bad_id_raises_invalid_id_error(user: str, thread: str | None) -> None:
    async with backend_of_a_tree() as backend:
        with pytest.raises(InvalidIdError):
            await backend.push(user, thread, 1)


async def test_a_push_to_a_stopped_tree_or_one_that_does_not_confirm_is_unavailable() -> None:
    async with backend_of_a_tree(timeout=0.2) as backend:
        confirmed = r"did not confirm the push within 0\.2s"
        with supervisors_held(backend.tree), pytest.raises(BackendUnavailable, match=confirmed):
            await backend.push("alice", None, 1)
        await off_loop(backend.tree.stop)
        with pytest.raises(BackendUnavailable, match=NOT_RUNNING):
            await backend.push("alice", None, 1)


@contextlib.asynccontextmanager
async def two_nodes(redis_server: RedisServer) -> AsyncIterator[tuple[TreeAdminBackend, Node]]:
    """Node A's backend, with A's pushes through Redis, and node B."""
    made: list[Node] = []
    try:
        for name in ("node-a", "node-b"):
            made.append(await off_loop(functools.partial(Node, redis_server, name)))
        a, b = made
        metrics, readiness = MetricsObserver(), Readiness(SystemClock())
        yield TreeAdminBackend(a.tree, metrics, readiness, pushes=a.pushes), b
    finally:
        for node in made:
            await off_loop(node.stop)


def record_calls(backend: TreeAdminBackend, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The order in which the backend routes a push through Redis and wakes its own tree."""
    called: list[str] = []
    pushes = backend.pushes
    assert pushes is not None
    send, push_nowait = pushes.send, backend.tree.push_nowait

    def sending(*args: Any) -> str:
        called.append("route through redis")
        return send(*args)

    def pushing(*args: Any) -> None:
        called.append("wake the local tree")
        push_nowait(*args)

    monkeypatch.setattr(pushes, "send", sending)
    monkeypatch.setattr(backend.tree, "push_nowait", pushing)
    return called


async def test_a_cluster_push_is_routed_through_redis_before_the_local_tree_is_woken(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with two_nodes(redis_server) as (backend, b):
        on_b = await off_loop(lambda: b.admit("alice", "t1"))
        here, _ = await connected(backend, "alice")
        called = record_calls(backend, monkeypatch)
        answer = await backend.push("alice", None, {"n": 1})
        assert called == ["route through redis", "wake the local tree"]
        assert (answer.delivered, dict(answer.nodes)) == (2, {"node-a": 1, "node-b": 1})
        assert await off_loop(lambda: on_b.frames.get(timeout=2)) == '{"n":1}'
        assert await off_loop(lambda: here.frames.get(timeout=2)) == '{"n":1}'


async def test_a_cluster_push_with_a_bad_id_or_from_a_stopped_tree_sends_nothing(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with two_nodes(redis_server) as (backend, _):
        called = record_calls(backend, monkeypatch)
        for user, thread in (("alice:t", None), ("alice", "t:x")):
            with pytest.raises(InvalidIdError):
                await backend.push(user, thread, 1)
        await off_loop(backend.tree.stop)
        with pytest.raises(BackendUnavailable, match=NOT_RUNNING):
            await backend.push("alice", None, 1)
        assert called == []


# --- the cluster --------------------------------------------------------------------------


async def test_a_node_that_counts_in_memory_has_no_cluster_view() -> None:
    async with backend_of_a_tree() as backend:
        with pytest.raises(BackendUnavailable, match="counts slots in memory"):
            await backend.cluster()


async def test_the_cluster_view_lists_every_user_with_slots_from_redis(
    ledger: RedisLedger,
) -> None:
    ledger.acquire("alice", "alice:t1", "ws_1", 5)
    ledger.acquire("bob", "bob:t1", "ws_2", 5)
    ledger.release("bob", "bob:t1", "ws_2")
    assert ledger.flush()
    async with backend_of_a_tree(shared_ledger=ledger) as backend:
        view = await backend.cluster()
    assert view["node_id"] == "node-a"
    assert [u["user_id"] for u in view["users"]] == ["alice"]
    [slot] = view["users"][0]["slots"]
    assert (slot["key"], slot["node_id"], slot["websocket_id"]) == ("alice:t1", "node-a", "ws_1")
    again = await off_loop(lambda: cluster_view(ledger))  # what cluster() runs off the loop
    assert [(u["user_id"], len(u["slots"])) for u in again["users"]] == [("alice", 1)]


async def test_a_shared_ledger_that_lost_redis_makes_the_node_not_ready_and_the_view_unavailable(
    ledger: RedisLedger, redis_server: RedisServer
) -> None:
    async with backend_of_a_tree(shared_ledger=ledger) as backend:
        assert await backend.readiness() == (True, [])
        redis_server.stop()
        assert ledger.probe() is False
        assert await backend.readiness() == (False, ["redis ledger unavailable (fail_open)"])
        with pytest.raises(BackendUnavailable, match="redis ledger unavailable: "):
            await backend.cluster()
