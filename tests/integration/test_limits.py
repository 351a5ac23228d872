"""The abuse limits on the real daemon, with real clients on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from actors.codes import ServerCloseCode
from supervisor.daemon import Daemon
from tests.integration.harness import open_ws, running_daemon, wait_for, ws_url

ADMITTED = "ws_supervisor_admissions_total"

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(30)]


async def closed_code(ws: ClientConnection, timeout: float = 5.0) -> int | None:
    """Read until the connection closes; its close code (None for an abrupt end)."""

    async def drain() -> None:
        with contextlib.suppress(ConnectionClosed):
            while True:
                await ws.recv()

    await asyncio.wait_for(drain(), timeout)
    return ws.close_code


async def all_slots_free(daemon: Daemon) -> None:
    await wait_for(lambda: daemon.tree.ledger.total() == 0, 5.0, "every slot free")


async def test_a_handshake_flood_from_one_address_gets_429_while_another_user_connects() -> None:
    limits = {"handshakes_per_second_per_address": 2.0, "handshake_burst_per_address": 5}
    async with running_daemon({"limits": limits}) as daemon:
        admitted: list[ClientConnection] = []
        refused = []
        for n in range(15):
            try:
                admitted.append(await connect(ws_url(daemon, user=f"flood{n}")))
            except InvalidStatus as error:
                refused.append(error.response)
        assert len(admitted) <= 6 and len(refused) >= 9
        assert {r.status_code for r in refused} == {429}
        assert all(int(r.headers["Retry-After"]) >= 1 for r in refused)
        assert daemon.tree.ledger.total() == len(admitted)  # a refused handshake holds no slot
        # the flooder's address is still limited; a second user from another address is not
        with pytest.raises(InvalidStatus):
            await connect(ws_url(daemon, user="flood-again"))
        bob = await open_ws(ws_url(daemon, user="bob"), local_addr=("127.0.0.2", 0))
        await bob.send(json.dumps({"type": "ping"}))
        assert json.loads(await asyncio.wait_for(bob.recv(), 5)) == {"type": "pong"}
        for ws in [bob, *admitted]:
            await ws.close()
        await all_slots_free(daemon)


async def test_too_many_handshakes_in_progress_get_503_and_hold_no_slot() -> None:
    async with running_daemon({"limits": {"max_concurrent_handshakes": 1}}) as daemon:
        gate = daemon.front.handshakes
        assert gate.try_enter()  # one handshake stands in progress
        try:
            with pytest.raises(InvalidStatus) as refused:
                await connect(ws_url(daemon))
            assert refused.value.response.status_code == 503
            assert daemon.tree.ledger.total() == 0
        finally:
            gate.leave()
        ws = await open_ws(ws_url(daemon))
        assert gate.active == 0
        await ws.close()
        await all_slots_free(daemon)


async def test_messages_faster_than_the_rate_close_with_1008_and_free_the_slot() -> None:
    limits = {"messages_per_second": 5.0, "message_burst": 10}
    async with running_daemon({"limits": limits}) as daemon:
        calm = await open_ws(ws_url(daemon, user="calm"))
        ws = await open_ws(ws_url(daemon))
        assert daemon.tree.ledger.total() == 2
        for n in range(50):
            with contextlib.suppress(ConnectionClosed):
                await ws.send(json.dumps({"type": "echo", "data": n}))
        assert await closed_code(ws) == ServerCloseCode.POLICY
        assert ws.close_reason == "message rate exceeded"
        await wait_for(lambda: daemon.tree.ledger.usage("alice") == 0, 3.0, "alice's slot free")
        await calm.send(json.dumps({"type": "ping"}))  # another connection is not affected
        assert json.loads(await asyncio.wait_for(calm.recv(), 5)) == {"type": "pong"}
        await calm.close()
        await all_slots_free(daemon)


async def test_a_reader_that_never_reads_what_is_pushed_to_it_is_shed_with_4004() -> None:
    overrides = {
        "limits": {"max_outbound_queue": 50, "max_outbound_bytes": 4 << 20},
        "server": {"compression": "none"},
    }
    async with running_daemon(overrides) as daemon:
        ws = await open_ws(ws_url(daemon), max_queue=1, compression=None)
        payload = os.urandom(16 * 1024).hex()  # 32 KiB
        started = time.monotonic()
        for _ in range(2000):  # ~64 MiB of pushes: far more than any socket buffer
            if not await daemon.admin.backend.push("alice", None, {"data": payload}):
                break  # shed: the connection is no longer the user's
        await wait_for(lambda: daemon.tree.ledger.total() == 0, 5.0, "the slow reader's slot")
        assert time.monotonic() - started < 10.0
        # the client never read: the close either reached it (4004) or the TCP connection was cut
        code = await closed_code(ws, timeout=10.0)
        assert code in (ServerCloseCode.SLOW_CONSUMER, 1006, None)
        other = await open_ws(ws_url(daemon, user="bob"))
        await other.close()
        await all_slots_free(daemon)


async def test_a_client_that_sends_but_never_reads_stops_being_read_and_is_reaped() -> None:
    async with running_daemon({"server": {"compression": "none"}}) as daemon:
        server = daemon.front.server
        assert server is not None
        ws = await open_ws(ws_url(daemon), max_queue=1, compression=None)
        (server_side,) = server.connections
        echo = json.dumps({"type": "echo", "data": os.urandom(16 * 1024).hex()})  # 32 KiB
        sent, paused = 0, False
        with contextlib.suppress(ConnectionClosed, TimeoutError):
            for _ in range(2000):  # ~64 MiB of echoes that are never read
                await asyncio.wait_for(ws.send(echo), 2)  # blocks once the server stops reading
                sent += 1
                paused = paused or not server_side.transport.is_reading()
        assert paused and sent < 2000, sent  # its replies backed up: it was no longer read
        timeouts = daemon.config.timeouts  # reaped as dead: it cannot answer a ping
        deadline = timeouts.ping_interval + timeouts.ping_timeout + 3.0
        await wait_for(lambda: daemon.tree.ledger.total() == 0, deadline, "the non-reader's slot")
        ws.transport.abort()
        await all_slots_free(daemon)


async def test_an_oversized_message_closes_with_1009_and_frees_the_slot() -> None:
    async with running_daemon({"server": {"max_message_size": 1024}}) as daemon:
        ws = await open_ws(ws_url(daemon))
        assert daemon.tree.ledger.total() == 1
        with contextlib.suppress(ConnectionClosed):
            await ws.send(json.dumps({"type": "echo", "data": "x" * 4096}))
        assert await closed_code(ws) == ServerCloseCode.TOO_BIG
        await all_slots_free(daemon)


async def test_a_disallowed_origin_gets_403_and_never_takes_a_slot() -> None:
    origins = "https://app.example.com,https://admin.example.com"
    async with running_daemon({"server": {"origins": origins}}) as daemon:
        admissions = daemon.metrics.value(ADMITTED, {"result": "admitted"})
        for origin in ("https://evil.example.com", None):
            with pytest.raises(InvalidStatus) as refused:
                await connect(ws_url(daemon), origin=origin)  # type: ignore[arg-type]
            assert refused.value.response.status_code == 403
            assert daemon.tree.ledger.total() == 0
        after = daemon.metrics.value(ADMITTED, {"result": "admitted"})
        assert after == admissions  # no slot was ever taken, not even for a moment
        ws = await open_ws(ws_url(daemon), origin="https://admin.example.com")
        assert daemon.tree.ledger.total() == 1
        await wait_for(  # the metric is counted on the actor's thread, just after the answer
            lambda: daemon.metrics.value(ADMITTED, {"result": "admitted"}) == admissions + 1,
            what="one admission counted",
        )
        await ws.close()
        await all_slots_free(daemon)


async def test_a_slow_handshake_is_cut_off_after_open_timeout_and_others_are_unaffected() -> None:
    overrides = {"limits": {"open_timeout": 0.5}, "server": {"admission_timeout": 0.25}}
    async with running_daemon(overrides) as daemon:
        reader, writer = await asyncio.open_connection("127.0.0.1", daemon.front.port)
        writer.write(b"GET /ws?user_id=slowpoke HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # half a request
        await writer.drain()
        started = time.monotonic()
        ws = await open_ws(ws_url(daemon, user="bob"))  # served while the other stalls
        await ws.send(json.dumps({"type": "ping"}))
        assert json.loads(await asyncio.wait_for(ws.recv(), 5)) == {"type": "pong"}
        rest = await asyncio.wait_for(reader.read(), 5)  # EOF: the server dropped it
        elapsed = time.monotonic() - started
        assert rest == b"" and 0.3 <= elapsed < 3.0
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
        assert daemon.tree.ledger.usage("slowpoke") == 0
        await ws.close()
        await all_slots_free(daemon)
