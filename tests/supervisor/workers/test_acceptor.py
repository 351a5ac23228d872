"""The master's listener on a real loopback port: heads read, refusals answered, hand-offs."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from supervisor.front.auth import Authenticator
from supervisor.workers.acceptor import Acceptor, listening_sockets
from supervisor.workers.routing import HandoffPolicy, owner_of
from tests.helpers import make_config

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(60)]

KEY = b"k" * 16
UPGRADE = (
    "Upgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
)


class Handed:
    """The master's hand-off, recorded: ``accept`` says whether the worker takes it."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, str, bytes, socket.socket]] = []
        self.accept = True

    def __call__(self, worker: int, user_id: str, prefix: bytes, sock: socket.socket) -> bool:
        if self.accept:
            self.calls.append((worker, user_id, prefix, sock))
        return self.accept

    def close(self) -> None:
        for *_, sock in self.calls:
            sock.close()


@contextlib.asynccontextmanager
async def accepting(
    overrides: dict[str, Any] | None = None,
) -> AsyncIterator[tuple[Acceptor, Handed]]:
    config = make_config({"server": {"host": "127.0.0.1", "port": 0}, **(overrides or {})})
    auth = Authenticator.from_config(config.auth, config.profile, {})
    handed = Handed()
    acceptor = Acceptor(config, HandoffPolicy(config, auth, 3, KEY), handed)
    acceptor.start(listening_sockets("127.0.0.1", 0, config.limits.open_timeout))
    try:
        yield acceptor, handed
    finally:
        acceptor.close()
        handed.close()


async def exchange(port: int, data: bytes, *, then: bytes = b"") -> bytes:
    """Send ``data`` (and ``then`` a moment later); what comes back until the server closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    if then:
        await asyncio.sleep(0.2)
        writer.write(then)
    answer = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    return answer


async def wait_for_calls(handed: Handed, count: int) -> None:
    async with asyncio.timeout(10):
        while len(handed.calls) < count:
            await asyncio.sleep(0.005)


async def test_a_head_is_handed_with_every_byte_read_to_its_user_s_worker() -> None:
    async with accepting() as (acceptor, handed):
        head = f"GET /ws?user_id=alice HTTP/1.1\r\nHost: x\r\n{UPGRADE}\r\n".encode()
        _, writer = await asyncio.open_connection("127.0.0.1", acceptor.port)
        writer.write(head + b"\x81\x85after")
        await wait_for_calls(handed, 1)
        [(worker, user, prefix, sock)] = handed.calls
        assert (worker, user) == (owner_of("alice", 3, KEY), "alice")
        assert prefix == head + b"\x81\x85after"
        assert sock.getpeername() == writer.get_extra_info("sockname")
        assert acceptor.results == {"handed": 1}
        writer.close()


async def test_a_head_split_over_two_segments_is_read_whole() -> None:
    async with accepting() as (acceptor, handed):
        head = f"GET /ws?user_id=bob HTTP/1.1\r\nHost: x\r\n{UPGRADE}\r\n".encode()
        _, writer = await asyncio.open_connection("127.0.0.1", acceptor.port)
        writer.write(head[:20])
        await asyncio.sleep(0.2)
        assert handed.calls == []
        writer.write(head[20:])
        await wait_for_calls(handed, 1)
        assert handed.calls[0][1:3] == ("bob", head)
        writer.close()


async def test_a_refused_head_gets_its_answer_and_the_connection_is_closed() -> None:
    async with accepting() as (acceptor, handed):
        answer = await exchange(acceptor.port, f"GET /other HTTP/1.1\r\n{UPGRADE}\r\n".encode())
        assert answer.startswith(b"HTTP/1.1 404 Not Found\r\n")
        assert answer.endswith(b"\r\n\r\nnot found\n")
        answer = await exchange(acceptor.port, b"POST /ws HTTP/1.1\r\nX: \x01\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 400 Bad Request\r\n")
        assert handed.calls == []
        assert acceptor.results == {"refused": 2}


async def test_every_answer_of_the_master_is_counted_by_status_and_gets_one_access_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with accepting({"limits": {"max_concurrent_handshakes": 1}}) as (acceptor, handed):
        caplog.set_level(logging.INFO, logger="supervisor.access")
        await exchange(acceptor.port, f"GET /other HTTP/1.1\r\n{UPGRADE}\r\n".encode())
        await exchange(acceptor.port, f"GET /ws HTTP/1.1\r\n{UPGRADE}\r\n".encode())
        _, slow = await asyncio.open_connection("127.0.0.1", acceptor.port)
        slow.write(b"GET /ws HTTP/1.1\r\n")  # one head in progress: the next is 503
        await asyncio.sleep(0.2)
        await exchange(acceptor.port, f"GET /ws?user_id=x HTTP/1.1\r\n{UPGRADE}\r\n".encode())
        slow.close()
        assert acceptor.answered == {404: 1, 401: 1, 503: 1}
        assert acceptor.busy == 1
        lines = [r.getMessage() for r in caplog.records if r.name == "supervisor.access"]
        assert [line.split(" status=")[1].split()[0] for line in lines] == ["404", "401", "503"]
        assert all(line.startswith("refused address=127.0.0.1 ") for line in lines)
        families = {m.name: m for m in acceptor.answered_metrics()}
        samples = {
            (s.name, tuple(s.labels.values())): s.value
            for m in families.values()
            for s in m.samples
        }
        assert samples[("ws_supervisor_handshakes_total", ("404",))] == 1
        assert samples[("ws_supervisor_admission_failures_total", ("handshakes_busy",))] == 1
        assert handed.calls == []


async def test_a_websockets_client_reads_the_master_s_refusal() -> None:
    async with accepting() as (acceptor, _):
        with pytest.raises(InvalidStatus) as refused:
            await connect(f"ws://127.0.0.1:{acceptor.port}/ws", open_timeout=5)
        response = refused.value.response
        assert (response.status_code, response.body) == (401, b"missing user_id query parameter\n")


async def test_a_worker_that_cannot_take_the_connection_makes_it_503_retry_after_1() -> None:
    async with accepting() as (acceptor, handed):
        handed.accept = False
        head = f"GET /ws?user_id=carol HTTP/1.1\r\n{UPGRADE}\r\n".encode()
        answer = await exchange(acceptor.port, head)
        assert answer.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
        assert b"\r\nRetry-After: 1\r\n" in answer
        assert acceptor.results == {"unavailable": 1}
        failures = next(
            m for m in acceptor.answered_metrics() if m.name == "ws_supervisor_admission_failures"
        )
        counted = {s.labels["outcome"]: s.value for s in failures.samples}
        assert counted["worker_unavailable"] == 1 and counted["handshakes_busy"] == 0


async def test_a_head_not_whole_within_the_open_timeout_is_dropped() -> None:
    quick = {"limits": {"open_timeout": 1.0}, "server": {"admission_timeout": 0.5}}
    async with accepting(quick) as (acceptor, handed):
        started = asyncio.get_running_loop().time()
        answer = await exchange(acceptor.port, b"GET /ws?user_id=dan HTTP/1.1\r\n")
        waited = asyncio.get_running_loop().time() - started
        assert answer == b""  # dropped without a word, as websockets drops it
        assert 0.9 <= waited < 5.0
        assert acceptor.results == {"dropped": 1} and handed.calls == []


async def test_a_client_that_leaves_before_its_head_is_whole_is_dropped() -> None:
    async with accepting() as (acceptor, handed):
        _, writer = await asyncio.open_connection("127.0.0.1", acceptor.port)
        writer.write(b"GET /ws HTTP/1.1\r\n")
        await asyncio.sleep(0.1)
        writer.close()
        async with asyncio.timeout(5):
            while acceptor.results["dropped"] == 0:
                await asyncio.sleep(0.01)
        assert acceptor.gate.active == 0 and handed.calls == []


async def test_heads_beyond_the_ones_in_progress_are_503() -> None:
    async with accepting({"limits": {"max_concurrent_handshakes": 1}}) as (acceptor, _):
        _, slow = await asyncio.open_connection("127.0.0.1", acceptor.port)
        slow.write(b"GET /ws HTTP/1.1\r\n")  # one head in progress, not whole
        await asyncio.sleep(0.2)
        answer = await exchange(
            acceptor.port, f"GET /ws?user_id=x HTTP/1.1\r\n{UPGRADE}\r\n".encode()
        )
        assert answer.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
        assert answer.endswith(b"too many handshakes in progress\n")
        slow.close()


async def test_a_listener_defers_accepting_until_the_client_speaks() -> None:
    sockets = listening_sockets("127.0.0.1", 0, 7.0)
    try:
        [listener] = sockets
        assert listener.getsockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT) > 0
        client = socket.create_connection(listener.getsockname())
        await asyncio.sleep(0.2)
        with pytest.raises(BlockingIOError):
            listener.accept()  # connected, silent: not handed to the acceptor yet
        client.sendall(b"G")
        await asyncio.sleep(0.2)
        accepted, _ = listener.accept()
        accepted.close()
        client.close()
    finally:
        for sock in sockets:
            sock.close()


async def test_closing_drops_the_heads_in_progress_and_frees_the_port() -> None:
    async with accepting() as (acceptor, _):
        port = acceptor.port
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /ws HTTP/1.1\r\n")
        await asyncio.sleep(0.2)
        acceptor.close()
        assert await asyncio.wait_for(reader.read(), 5) == b""
        writer.close()
        with pytest.raises(OSError):
            await asyncio.open_connection("127.0.0.1", port)


async def test_a_decision_that_fails_is_500_for_that_connection_and_the_next_is_served(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with accepting() as (acceptor, handed):

        def broken(head: object, address: str) -> object:
            raise ZeroDivisionError("a bug")

        decide = acceptor.policy.decide
        acceptor.policy.decide = broken  # type: ignore[method-assign, assignment]
        answer = await exchange(
            acceptor.port, f"GET /ws?user_id=e HTTP/1.1\r\n{UPGRADE}\r\n".encode()
        )
        assert answer.startswith(b"HTTP/1.1 500 Internal Server Error\r\n")
        assert "deciding on a request head failed" in caplog.text
        acceptor.policy.decide = decide  # type: ignore[method-assign]
        _, writer = await asyncio.open_connection("127.0.0.1", acceptor.port)
        writer.write(f"GET /ws?user_id=f HTTP/1.1\r\n{UPGRADE}\r\n".encode())
        await wait_for_calls(handed, 1)
        assert acceptor.gate.active == 0
        writer.close()
