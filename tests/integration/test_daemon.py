"""The real daemon on loopback, with real websockets clients."""

from __future__ import annotations

import asyncio
import base64
import gc
import json
import os
import socket
import struct
import sys
import threading
import time
import weakref
from types import FrameType
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.protocol import State

from actors.codes import ServerCloseCode
from actors.handle import ConnectionHandle
from supervisor.daemon import Daemon
from supervisor.front import server as server_module
from supervisor.front import session
from supervisor.front.bridge import WebSocketPort
from supervisor.front.connection import AcyclicConnection
from tests.apps.faulty import RELEASE
from tests.helpers import actor_threads
from tests.integration.harness import (
    open_client,
    ping_ok,
    recv_json,
    running_daemon,
    wait_for,
    ws_url,
)

pytestmark = pytest.mark.asyncio


def used(daemon: Daemon, user: str = "alice") -> int:
    return daemon.tree.ledger.usage(user)


async def test_the_21st_connection_gets_429_and_the_next_is_admitted_once_one_closes() -> None:
    async with running_daemon(
        {"quota": {"max_managers_per_user": 20}, "thresholds": {"emergency_action": "none"}}
    ) as daemon:
        clients = [await connect(ws_url(daemon)) for _ in range(20)]
        with pytest.raises(InvalidStatus) as refused:
            await connect(ws_url(daemon))
        assert refused.value.response.status_code == 429
        assert refused.value.response.headers["Retry-After"] == "1"
        await clients[0].close()
        started = time.monotonic()
        await wait_for(lambda: used(daemon) == 19, what="slot freed on close")
        freed_in = time.monotonic() - started
        again = await connect(ws_url(daemon))
        assert used(daemon) == 20 and freed_in < 1.0
        for ws in [again, *clients[1:]]:
            await ws.close()
        await wait_for(lambda: used(daemon) == 0, what="every slot free")


async def test_the_first_frame_is_the_welcome_with_every_id() -> None:
    async with running_daemon() as daemon:
        ws, welcome = await open_client(ws_url(daemon))
        assert welcome["type"] == "welcome" and welcome["user_id"] == "alice"
        assert welcome["run_id"] in welcome["thread_id"]
        (user,) = daemon.tree.snapshot()["users"]
        (manager,) = user["managers"]
        assert manager["websocket_id"] == welcome["websocket_id"]
        assert manager["isolation_key"] == f"alice:{welcome['thread_id']}"
        await ws.close()


async def test_ping_echo_and_every_bad_frame_get_an_answer_and_the_connection_stays_open() -> None:
    async with running_daemon() as daemon:
        ws, _ = await open_client(ws_url(daemon))
        await ws.send(json.dumps({"type": "ping"}))
        assert await recv_json(ws) == {"type": "pong"}
        await ws.send(json.dumps({"type": "echo", "data": {"n": [1, 2]}}))
        assert await recv_json(ws) == {"type": "echo", "data": {"n": [1, 2]}}
        bad = {
            "{not json": "invalid_json",
            "[1, 2]": "not_an_object",
            '{"data": 1}': "missing_type",
            '{"type": "nope"}': "unknown_type",
            "[" * 50 + "]" * 50: "not_an_object",
            '{"type": "x", "d": ' + "[" * 40 + "]" * 40 + "}": "too_deep",
        }
        for frame, code in bad.items():
            await ws.send(frame)
            answer = await recv_json(ws)
            assert (answer["type"], answer["code"]) == ("error", code), frame
        await ws.send(b"\x00\x01binary")
        assert (await recv_json(ws))["code"] == "binary_not_supported"
        await ws.send(json.dumps({"type": "ping"}))
        assert await recv_json(ws) == {"type": "pong"}
        await ws.close()


async def test_a_wrong_path_a_missing_user_and_a_bad_thread_id_are_refused_before_the_upgrade() -> (
    None
):
    async with running_daemon() as daemon:
        base = f"ws://127.0.0.1:{daemon.front.port}"
        cases = {
            f"{base}/other?user_id=alice": 404,
            f"{base}/ws": 401,
            f"{base}/ws?user_id=a:b": 401,
            f"{base}/ws?user_id=alice&thread_id=x:y": 400,
            f"{base}/ws?user_id=alice&thread_id=" + "t" * 200: 400,
        }
        for url, status in cases.items():
            with pytest.raises(InvalidStatus) as refused:
                await connect(url)
            assert refused.value.response.status_code == status, url
        assert daemon.tree.ledger.total() == 0


async def test_resuming_a_thread_supersedes_the_old_connection_with_4001_and_holds_one_slot() -> (
    None
):
    async with running_daemon() as daemon:
        old, welcome = await open_client(ws_url(daemon))
        new, again = await open_client(ws_url(daemon, thread_id=welcome["thread_id"]))
        assert again["thread_id"] == welcome["thread_id"]
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(old.recv(), 5)
        assert old.close_code == ServerCloseCode.SUPERSEDED
        assert used(daemon) == 1
        await new.send(json.dumps({"type": "echo", "data": "still served"}))
        assert (await recv_json(new))["data"] == "still served"
        await new.close()
        await wait_for(lambda: used(daemon) == 0, what="slot freed")


@pytest.mark.parametrize("app", ["tests.apps.faulty:FaultyApp", "tests.apps.where:InlineFaultyApp"])
async def test_a_crashing_handler_is_restarted_then_closed_with_1011_and_its_slot_freed(
    app: str,
) -> None:
    async with running_daemon({"server": {"app": app}, "restart": {"max_restarts": 2}}) as daemon:
        ws, _ = await open_client(ws_url(daemon))
        for _ in range(2):
            await ws.send(json.dumps({"type": "crash"}))
            await ws.send(json.dumps({"type": "echo", "data": "after a restart"}))
            assert (await recv_json(ws))["data"] == "after a restart"
        await ws.send(json.dumps({"type": "crash"}))
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 5)
        assert ws.close_code == ServerCloseCode.INTERNAL_ERROR
        await wait_for(lambda: used(daemon) == 0, what="slot freed after 1011")


async def test_an_inline_app_answers_from_the_event_loop_and_another_from_a_manager_worker() -> (
    None
):
    loop_thread = threading.current_thread().name
    for app in ("InlineWhereApp", "WorkerWhereApp"):
        async with running_daemon({"server": {"app": f"tests.apps.where:{app}"}}) as daemon:
            ws, _ = await open_client(ws_url(daemon))
            threads = []
            for _ in range(5):
                await ws.send(json.dumps({"type": "where"}))
                threads.append((await recv_json(ws))["thread"])
            await ws.close()
            await wait_for(lambda: used(daemon) == 0, what="slot freed")
        on_loop = threads.count(loop_thread)
        on_workers = sum(name.startswith("ws-supervisor-managers") for name in threads)
        assert on_loop + on_workers == 5, threads
        if app == "InlineWhereApp":  # on the loop whenever the manager is idle: nearly always
            assert on_loop >= 1, threads
        else:
            assert on_loop == 0, threads


async def test_a_crashed_user_supervisor_closes_with_1012_and_the_user_reconnects_at_once() -> None:
    async with running_daemon() as daemon:
        clients = [(await open_client(ws_url(daemon)))[0] for _ in range(3)]
        bob, _ = await open_client(ws_url(daemon, user="bob"))
        loop = asyncio.get_running_loop()
        assert await loop.run_in_executor(None, daemon.tree.crash_user_supervisor, "alice")
        for ws in clients:
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 5)
            assert ws.close_code == ServerCloseCode.SERVICE_RESTART
        await wait_for(lambda: used(daemon) == 0, what="alice's slots freed")
        again, welcome = await open_client(ws_url(daemon))
        assert welcome["type"] == "welcome"
        await bob.send(json.dumps({"type": "ping"}))
        assert await recv_json(bob) == {"type": "pong"}
        await again.close()
        await bob.close()


async def test_a_hanging_handler_is_abandoned_within_the_cleanup_timeout_and_its_slot_freed() -> (
    None
):
    RELEASE.clear()
    try:
        async with running_daemon({"server": {"app": "tests.apps.faulty:FaultyApp"}}) as daemon:
            ws, _ = await open_client(ws_url(daemon))
            await ws.send(json.dumps({"type": "hang"}))
            await asyncio.sleep(0.05)
            await ws.close()
            await wait_for(lambda: used(daemon) == 0, what="slot freed though the handler hangs")
            timeout = daemon.config.cleanup.emergency_cleanup_timeout
            abandoned = "ws_supervisor_abandoned_actors_total"
            await wait_for(
                lambda: daemon.metrics.value(abandoned) == 1,
                timeout + 2,
                what="the hung manager abandoned",
            )
    finally:
        RELEASE.set()


async def test_500_connections_closed_at_once_free_every_slot_within_2_seconds() -> None:
    async with running_daemon(
        {"quota": {"max_managers_per_user": 20}, "thresholds": {"emergency_action": "none"}}
    ) as daemon:
        clients = []
        for n in range(500):
            clients.append(await connect(ws_url(daemon, user=f"user{n // 20}")))
        assert daemon.tree.ledger.total() == 500
        started = time.monotonic()
        for ws in clients:
            ws.transport.abort()  # dropped, no close frame: the server sees the TCP close
        await wait_for(lambda: daemon.tree.ledger.total() == 0, 2.0, what="500 slots free")
        assert time.monotonic() - started < 2.0


def _functions_on_the_stack() -> set[str]:
    frame: FrameType | None = sys._getframe(1)
    names = set()
    while frame is not None:
        names.add(frame.f_code.co_name)
        frame = frame.f_back
    return names


def _watch_handle_calls(
    monkeypatch: pytest.MonkeyPatch,
) -> list[tuple[str, set[str], int | None]]:
    """Each ``peer_gone`` and ``closed`` of a handle: the functions on its stack, the code."""
    calls: list[tuple[str, set[str], int | None]] = []
    peer_gone, closed = ConnectionHandle.peer_gone, ConnectionHandle.closed

    def watched_peer_gone(handle: ConnectionHandle) -> None:
        calls.append(("peer_gone", _functions_on_the_stack(), None))
        peer_gone(handle)

    def watched_closed(handle: ConnectionHandle, code: int | None = None) -> None:
        calls.append(("closed", _functions_on_the_stack(), code))
        closed(handle, code)

    monkeypatch.setattr(ConnectionHandle, "peer_gone", watched_peer_gone)
    monkeypatch.setattr(ConnectionHandle, "closed", watched_closed)
    return calls


async def test_a_connection_dropped_with_a_fin_frees_its_slot_inside_eof_received_then_closes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls = _watch_handle_calls(monkeypatch)
    async with running_daemon() as daemon:
        ws, _ = await open_client(ws_url(daemon))  # the welcome read: nothing left unread
        assert daemon.tree.ledger.total() == 1
        ws.transport.abort()  # no close frame: the server reads an EOF
        await wait_for(lambda: daemon.tree.ledger.total() == 0, what="the slot freed")
        assert calls[0][0] == "peer_gone" and "eof_received" in calls[0][1]
        await wait_for(lambda: len(calls) >= 2, what="the close that follows")
        assert calls[1][0] == "closed" and "eof_received" not in calls[1][1]  # after the batch
        assert calls[1][2] == 1006  # no close frame came: an abnormal closure
        # websockets' side of the EOF, left to connection_lost, ends the connection too
        await wait_for(lambda: daemon.front.connections == 0, what="the connection ended")
        cleanups = {"reason": "close", "result": "ok"}
        await wait_for(
            lambda: daemon.metrics.value("ws_supervisor_cleanups_total", cleanups) == 1,
            what="the manager retired",
        )
        assert daemon.metrics.value("ws_supervisor_thread_id_mismatches_total") == 0


async def test_a_connection_dropped_with_a_fin_is_torn_down_only_by_its_deferred_close(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls = _watch_handle_calls(monkeypatch)
    connection_lost = AcyclicConnection.connection_lost

    def watched_connection_lost(connection: AcyclicConnection, exc: Exception | None) -> None:
        calls.append(("connection_lost", _functions_on_the_stack(), None))
        connection_lost(connection, exc)

    monkeypatch.setattr(AcyclicConnection, "connection_lost", watched_connection_lost)
    async with running_daemon() as daemon:
        ws, _ = await open_client(ws_url(daemon))  # the welcome read: nothing left unread
        ws.transport.abort()  # no close frame: the server reads an EOF
        await wait_for(lambda: daemon.front.connections == 0, what="the connection ended")
    names = [name for name, *_ in calls]
    # the transport stays open after the EOF; the deferred close closes it
    assert names[:3] == ["peer_gone", "closed", "connection_lost"]
    assert "_next_chunk" in calls[1][1] and "_next_chunk" not in calls[2][1]


async def test_a_peer_that_drops_after_its_handler_has_ended_still_has_its_socket_closed() -> None:
    keepalive = {"ping_interval": 60.0, "ping_timeout": 60.0}  # nothing else closes it
    async with running_daemon({"timeouts": keepalive}) as daemon:
        ws, _ = await open_client(ws_url(daemon))
        assert daemon.front.server is not None
        (connection,) = daemon.front.server.connections
        daemon.front._admitted.pop(connection)  # as the end of its handler does
        ws.transport.abort()  # no close frame: an EOF that nobody owns any more
        await wait_for(lambda: daemon.front.connections == 0, what="the connection ended")
        await wait_for(lambda: daemon.tree.ledger.total() == 0, what="the slot freed")


async def test_a_connection_closed_with_a_closing_handshake_is_closed_in_one_call(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls = _watch_handle_calls(monkeypatch)
    async with running_daemon() as daemon:
        ws, _ = await open_client(ws_url(daemon))
        await ws.close()  # the handshake ends with an EOF from each side
        await wait_for(lambda: daemon.tree.ledger.total() == 0, what="the slot freed")
        assert [name for name, *_ in calls][:1] == ["closed"]
        assert all(name == "closed" for name, *_ in calls)  # never split: not a dropped peer
        assert calls[0][2] == 1000  # the code of the closing handshake


@pytest.mark.parametrize(
    ("peer", "noticed_in"), [("fin", "eof_received"), ("rst", "connection_lost")]
)
async def test_a_dropped_connection_frees_its_slot_as_the_loss_is_read_before_its_handler_unwinds(
    monkeypatch: pytest.MonkeyPatch, peer: str, noticed_in: str
) -> None:
    calls = _watch_handle_calls(monkeypatch)
    async with running_daemon() as daemon:
        ws, _ = await open_client(ws_url(daemon))  # the welcome read: nothing left unread
        assert daemon.tree.ledger.total() == 1
        if peer == "rst":  # a reset instead of an EOF: the server never reads one
            sock = ws.transport.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        ws.transport.abort()  # no close frame
        await wait_for(lambda: daemon.tree.ledger.total() == 0, what="the slot freed")
        assert calls[0][0] == "peer_gone"  # an abrupt loss: the slot alone, the close after
        assert noticed_in in calls[0][1] and "serve_connection" not in calls[0][1]
        await wait_for(
            lambda: any("serve_connection" in stack for _, stack, _ in calls),
            what="the handler's end",
        )  # its closed() comes after the slot was freed: a no-op then


async def test_a_connection_lost_while_it_waits_for_its_slot_frees_the_slot_it_then_gets(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    admit = session.admit

    async def late_admit(tree: Any, context: Any, port: WebSocketPort, timeout: float) -> Any:
        admission = await admit(tree, context, port, timeout)
        lost = port._connection.connection_lost_waiter
        await asyncio.wait_for(asyncio.shield(lost), 5)  # the answer comes after the loss
        return admission

    monkeypatch.setattr(server_module, "admit", late_admit)
    async with running_daemon() as daemon:
        _, writer = await asyncio.open_connection("127.0.0.1", daemon.front.port)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            f"GET /ws?user_id=alice HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            f"Sec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        await wait_for(lambda: daemon.tree.ledger.total() == 1, what="the slot taken")
        writer.close()  # gone before the handshake's answer
        await wait_for(lambda: daemon.tree.ledger.total() == 0, what="the slot freed")


async def test_1000_connections_over_10_users_each_used_and_closed_leave_0_managers() -> None:
    async with running_daemon() as daemon:

        async def user_session(user: str) -> None:
            for _ in range(100):
                ws, _ = await open_client(ws_url(daemon, user=user))
                await ws.send(json.dumps({"type": "echo", "data": user}))
                assert (await recv_json(ws))["data"] == user
                await ws.close()

        await asyncio.gather(*(user_session(f"user{n}") for n in range(10)))
        await wait_for(lambda: daemon.tree.ledger.total() == 0, what="0 slots")
        state = await asyncio.get_running_loop().run_in_executor(None, daemon.tree.snapshot)
        assert sum(len(u["managers"]) for u in state["users"]) == 0
        mismatches = daemon.metrics.value("ws_supervisor_thread_id_mismatches_total")
        assert mismatches == 0


async def test_after_the_daemon_stops_no_actor_thread_or_listener_is_left() -> None:
    async with running_daemon() as daemon:
        ws, _ = await open_client(ws_url(daemon))
        port = daemon.front.port
    with pytest.raises(ConnectionClosed):
        await asyncio.wait_for(ws.recv(), 5)
    assert ws.close_code == ServerCloseCode.GOING_AWAY
    assert actor_threads() == [] or all(not t.is_alive() for t in actor_threads())
    with pytest.raises(OSError):
        await connect(f"ws://127.0.0.1:{port}/ws?user_id=alice", open_timeout=2)


async def _http(port: int, method: str, path: str, body: bytes = b"") -> tuple[int, Any]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(body)}\r\n\r\n"
    writer.write(head.encode() + body)
    raw = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    await writer.wait_closed()
    status_line, _, rest = raw.partition(b"\r\n")
    payload = rest.partition(b"\r\n\r\n")[2]
    return int(status_line.split()[1]), json.loads(payload) if payload else None


async def test_push_over_http_reaches_the_threads_connection_and_never_another_users() -> None:
    async with running_daemon() as daemon:
        alice, welcome = await open_client(ws_url(daemon))
        alice2, _ = await open_client(ws_url(daemon))
        bob, _ = await open_client(ws_url(daemon, user="bob"))
        port = daemon.admin.port
        body = {"user_id": "alice", "thread_id": welcome["thread_id"], "message": {"n": 1}}
        status, answer = await _http(port, "POST", "/v1/push", json.dumps(body).encode())
        assert (status, answer) == (200, {"delivered": 1})
        assert await recv_json(alice) == {"n": 1}
        body = {"user_id": "bob", "thread_id": welcome["thread_id"], "message": "forged"}
        status, answer = await _http(port, "POST", "/v1/push", json.dumps(body).encode())
        assert (status, answer) == (200, {"delivered": 0})
        status, answer = await _http(
            port, "POST", "/v1/push", json.dumps({"user_id": "alice", "message": 2}).encode()
        )
        assert answer == {"delivered": 2}
        assert await recv_json(alice) == 2 and await recv_json(alice2) == 2
        await bob.send(json.dumps({"type": "ping"}))
        assert await recv_json(bob) == {"type": "pong"}  # nothing pushed came first
        for ws in (alice, alice2, bob):
            await ws.close()


async def test_the_admin_endpoints_answer_as_documented_while_serving() -> None:
    async with running_daemon() as daemon:
        ws, _ = await open_client(ws_url(daemon))
        port = daemon.admin.port
        assert (await _http(port, "GET", "/healthz"))[0] == 200
        assert await _http(port, "GET", "/readyz") == (200, {"ready": True})
        status, state = await _http(port, "GET", "/debug/state")
        assert status == 200 and state["users"][0]["user_id"] == "alice"
        assert state["root"]["node_id"] == daemon.node_id
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        metrics = (await asyncio.wait_for(reader.read(), 5)).decode()
        writer.close()
        assert 'ws_supervisor_admissions_total{result="admitted"} 1.0' in metrics
        assert "user_id" not in metrics and "alice" not in metrics
        await ws.close()


async def test_a_new_user_gets_503_at_node_emergency_and_known_users_still_connect() -> None:
    async with running_daemon(
        {
            "quota": {"node_max_managers": 10},
            "thresholds": {"emergency_action": "none", "critical_action": "none"},
        }
    ) as daemon:
        clients = [await connect(ws_url(daemon, user=f"user{n % 3}")) for n in range(9)]
        await wait_for(lambda: daemon.tree.ledger.total() == 9)
        await asyncio.sleep(0.05)  # the root has classified the node (9/10: emergency)
        with pytest.raises(InvalidStatus) as refused:
            await connect(ws_url(daemon, user="newcomer"))
        assert refused.value.response.status_code == 503
        known = await connect(ws_url(daemon, user="user0"))  # the last slot of the node
        with pytest.raises(InvalidStatus) as full:
            await connect(ws_url(daemon, user="user1"))
        assert full.value.response.status_code == 503  # node cap reached
        for ws in [known, *clients]:
            await ws.close()


async def test_a_connection_that_ends_leaves_nothing_for_the_cyclic_collector() -> None:
    async with running_daemon() as daemon:
        server = daemon.front.server
        assert server is not None
        gc.collect()
        gc.disable()  # only reference counting may free what the connections leave
        try:
            parts: list[weakref.ref[object]] = []
            for n in range(4):
                client, _ = await open_client(ws_url(daemon, thread_id=f"t{n}"))
                (server_side,) = server.connections
                parts += [weakref.ref(server_side.transport), weakref.ref(server_side.protocol)]
                del server_side
                if n % 2:
                    client.transport.abort()  # gone without a close frame
                else:
                    await client.close()
                await wait_for(lambda: not server.connections, what="handler done")
            await wait_for(lambda: all(ref() is None for ref in parts), what="freed")
        finally:
            gc.enable()


async def test_an_idle_connection_keeps_one_task_on_the_loop_the_websockets_handler() -> None:
    # the keepalive shares one scheduler per loop and the port writes without a task of its own
    async with running_daemon({"timeouts": {"ping_interval": 30.0}}) as daemon:
        before = len(asyncio.all_tasks())
        clients = [(await open_client(ws_url(daemon), ping_interval=None))[0] for _ in range(5)]
        await asyncio.sleep(0.05)  # every admission's last step has run
        assert len(asyncio.all_tasks()) - before == len(clients)
        for ws in clients:
            await ws.send(json.dumps({"type": "echo", "data": "still served"}))
            assert (await recv_json(ws))["data"] == "still served"
        assert len(asyncio.all_tasks()) - before == len(clients)
        for ws in clients:
            await ws.close()
        await wait_for(lambda: daemon.tree.ledger.total() == 0, what="every slot free")


async def test_a_peer_that_stops_answering_pings_loses_its_slot_within_interval_plus_timeout() -> (
    None
):
    keepalive = {"ping_interval": 0.2, "ping_timeout": 0.2, "tick_interval": 1.0}  # sweeps late
    async with running_daemon({"timeouts": keepalive}) as daemon:
        dead, _ = await open_client(ws_url(daemon, user="dead"), ping_interval=None)
        assert daemon.front.server is not None
        (server_side,) = daemon.front.server.connections
        alive, _ = await open_client(ws_url(daemon, user="alive"), ping_interval=None)
        await asyncio.sleep(0.5)  # both have answered pings by now
        dead.transport.pause_reading()  # the daemon's pings go unanswered from here on
        started = time.monotonic()
        await wait_for(lambda: used(daemon, "dead") == 0, 2.0, "the dead peer's slot")
        assert time.monotonic() - started < 0.4 + 0.3  # interval + timeout, and scheduling slack
        # the keepalive aborted it: no close frame, no closing handshake to wait for (the
        # abort's connection_lost runs a loop iteration after the slot is freed)
        await wait_for(lambda: server_side.protocol.state is State.CLOSED, 1.0, "the abort")
        assert server_side.protocol.close_sent is None
        await asyncio.sleep(1.0)  # five more intervals: the peer that answers keeps its slot
        assert used(daemon, "alive") == 1
        await ping_ok(alive)
        dead.transport.abort()
        await alive.close()
        await wait_for(lambda: daemon.tree.ledger.total() == 0, what="every slot free")
