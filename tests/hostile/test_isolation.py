"""A user can never reach another user's connection, whatever ids they put forward."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from websockets.asyncio.client import connect

from supervisor.daemon import Daemon
from tests.hostile import all_slots_free, http_request, open_client, ping_ok, recv_json
from tests.integration.harness import running_daemon, ws_url

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(30)]


async def _snapshot(daemon: Daemon) -> dict[str, Any]:
    state: dict[str, Any] = await asyncio.get_running_loop().run_in_executor(
        None, daemon.tree.snapshot
    )
    return state


async def test_bob_resuming_alices_thread_id_does_not_supersede_alice() -> None:
    async with running_daemon() as daemon:
        alice, welcome = await open_client(ws_url(daemon, user="alice"))
        bob, bobs = await open_client(ws_url(daemon, user="bob", thread_id=welcome["thread_id"]))
        assert bobs["user_id"] == "bob" and bobs["thread_id"] == welcome["thread_id"]
        assert bobs["websocket_id"] != welcome["websocket_id"]
        await ping_ok(alice)  # still open: not superseded (4001)
        await ping_ok(bob)
        assert daemon.tree.ledger.usage("alice") == 1 and daemon.tree.ledger.usage("bob") == 1
        state = await _snapshot(daemon)
        keys = {m["isolation_key"] for user in state["users"] for m in user["managers"]}
        thread = welcome["thread_id"]
        assert keys == {f"alice:{thread}", f"bob:{thread}"}
        for ws in (alice, bob):
            await ws.close()
        await all_slots_free(daemon)


async def test_a_push_for_bob_with_alices_thread_id_delivers_nothing_to_alice() -> None:
    async with running_daemon() as daemon:
        alice, welcome = await open_client(ws_url(daemon, user="alice"))
        bob, _ = await open_client(ws_url(daemon, user="bob"))
        forged = [
            {"user_id": "bob", "thread_id": welcome["thread_id"], "message": "forged"},
            {"user_id": "Alice", "thread_id": welcome["thread_id"], "message": "forged"},
            {"user_id": "alice ", "message": "forged"},
        ]
        for body in forged:
            status, answer = await http_request(
                daemon.admin.port, "POST", "/v1/push", json.dumps(body).encode()
            )
            assert status in (200, 400), (body, status, answer)
            if status == 200:
                assert json.loads(answer) == {"delivered": 0}, body
        key = {"user_id": f"alice:{welcome['thread_id']}", "message": "forged"}
        status, _ = await http_request(
            daemon.admin.port, "POST", "/v1/push", json.dumps(key).encode()
        )
        assert status == 400  # an isolation key is not a user id
        await ping_ok(alice)  # the pong is the first frame: nothing was pushed to alice
        await ping_ok(bob)
        for ws in (alice, bob):
            await ws.close()
        await all_slots_free(daemon)


@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_the_state_dump_metrics_and_push_are_never_served_on_the_public_port(
    method: str,
) -> None:
    async with running_daemon() as daemon:
        alice, welcome = await open_client(ws_url(daemon, user="alice"))
        body = (
            json.dumps({"user_id": "alice", "message": "x"}).encode() if method == "POST" else b""
        )
        for path in ("/debug/state", "/metrics", "/v1/push", "/healthz", "/readyz"):
            status, answer = await http_request(daemon.front.port, method, path, body)
            # GET: the front's 404; POST: websockets drops the connection without an answer
            assert status == (404 if method == "GET" else 0), (method, path, status, answer)
            assert b"alice" not in answer and welcome["thread_id"].encode() not in answer
            assert b"ws_supervisor_" not in answer
        await ping_ok(alice)
        await alice.close()
        await all_slots_free(daemon)


async def test_frames_naming_another_users_ids_only_ever_echo_back_to_the_sender() -> None:
    async with running_daemon() as daemon:
        alice, welcome = await open_client(ws_url(daemon, user="alice"))
        bob, _ = await open_client(ws_url(daemon, user="bob"))
        forged: dict[str, Any] = {
            "type": "echo",
            "user_id": "alice",
            "thread_id": welcome["thread_id"],
            "websocket_id": welcome["websocket_id"],
            "isolation_key": f"alice:{welcome['thread_id']}",
            "data": "from bob",
        }
        for variant in (forged, {**forged, "type": "welcome"}, {**forged, "type": "ping"}):
            await bob.send(json.dumps(variant))
            answer = await recv_json(bob)
            assert answer["type"] in ("echo", "error", "pong"), answer
        await ping_ok(alice)  # alice's first frame after all that is her own pong
        await ping_ok(bob)
        for ws in (alice, bob):
            await ws.close()
        await all_slots_free(daemon)


@pytest.mark.asyncio
async def test_a_plain_http_get_with_a_users_thread_id_never_takes_a_slot_or_supersedes() -> None:
    async with running_daemon() as daemon:
        alice = await connect(ws_url(daemon))
        welcome = json.loads(await asyncio.wait_for(alice.recv(), 5))
        reader, writer = await asyncio.open_connection("127.0.0.1", daemon.front.port)
        path = f"/ws?user_id=alice&thread_id={welcome['thread_id']}"
        writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        answer = await asyncio.wait_for(reader.read(), 5)
        writer.close()
        await writer.wait_closed()
        assert answer.split(b" ")[1] in (b"400", b"426")
        await alice.send(json.dumps({"type": "ping"}))
        assert json.loads(await asyncio.wait_for(alice.recv(), 5)) == {"type": "pong"}
        assert daemon.metrics.value("ws_supervisor_admissions_total", {"result": "superseded"}) == 0
        assert daemon.tree.ledger.usage("alice") == 1
        await alice.close()
