"""Deferred closes: run a chunk per loop iteration, after the reads ready in it."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable

import pytest

from supervisor.front.closing import DeferredCloses

pytestmark = pytest.mark.asyncio


async def _until_empty(closes: DeferredCloses) -> None:
    for _ in range(100):
        if len(closes) == 0:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{len(closes)} closes still queued")


async def test_deferred_closes_wait_behind_the_reads_ready_and_run_a_chunk_per_iteration() -> None:
    events: list[str] = []
    reader, writer = socket.socketpair()

    def close(n: int) -> Callable[[], None]:
        def run() -> None:
            events.append(f"close {n}")
            if n == 1:
                writer.send(b"x")  # a read becomes ready while the rest wait

        return run

    def on_read() -> None:
        reader.recv(16)
        events.append("read")

    loop = asyncio.get_running_loop()
    loop.add_reader(reader, on_read)
    try:
        closes = DeferredCloses(loop, chunk=2)
        for n in range(5):
            closes.add(close(n))
        writer.send(b"x")  # ready at the next iteration's poll, as the timer falls due
        assert events == [] and len(closes) == 5  # nothing runs on the caller's turn
        await _until_empty(closes)
    finally:
        loop.remove_reader(reader)
        reader.close()
        writer.close()
    assert events == ["read", "close 0", "close 1", "read", "close 2", "close 3", "close 4"]


async def test_a_close_queued_on_a_quiet_loop_runs_at_its_next_iteration() -> None:
    ran: list[int] = []
    closes = DeferredCloses(asyncio.get_running_loop())
    closes.add(lambda: ran.append(1))
    assert ran == []
    await asyncio.sleep(0)  # the timer falls due at once
    await asyncio.sleep(0)
    assert ran == [1] and len(closes) == 0


async def test_a_close_that_raises_is_logged_and_the_others_still_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    ran: list[int] = []

    def broken() -> None:
        raise RuntimeError("boom")

    closes = DeferredCloses(asyncio.get_running_loop(), chunk=2)
    for close in (lambda: ran.append(0), broken, lambda: ran.append(2), lambda: ran.append(3)):
        closes.add(close)
    with caplog.at_level(logging.ERROR, logger="supervisor.front.closing"):
        await _until_empty(closes)
    assert ran == [0, 2, 3]
    assert [r.getMessage() for r in caplog.records] == ["deferred close failed"]
    assert caplog.records[0].exc_info is not None  # with its traceback, for the log reader
