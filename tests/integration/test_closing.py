"""Deferred closes: done a chunk per loop iteration, after the reads ready in it."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator

import pytest
from websockets.frames import CloseCode

from actors.ports import ConnectionHandle
from supervisor.closing import DeferredCloses
from supervisor.metrics import MetricsObserver
from supervisor.tree import SupervisionTree
from tests.helpers import connect, handle_of, make_config, wait_until

pytestmark = pytest.mark.asyncio


@pytest.fixture
def tree() -> Iterator[SupervisionTree]:
    with SupervisionTree(make_config(), observer=MetricsObserver()) as tree:
        yield tree


async def test_deferred_closes_wait_behind_the_reads_ready_and_run_a_chunk_per_iteration(
    tree: SupervisionTree, monkeypatch: pytest.MonkeyPatch
) -> None:
    handles = [handle_of(connect(tree, f"user-{n}")[0]) for n in range(5)]
    events: list[str] = []
    reader, writer = socket.socketpair()
    closed = ConnectionHandle.closed

    def watched_closed(handle: ConnectionHandle, code: int | None = None) -> None:
        events.append(f"close {handles.index(handle)} {code}")
        closed(handle, code)
        if handle is handles[1]:
            writer.send(b"x")  # a read becomes ready while the rest wait

    def on_read() -> None:
        reader.recv(16)
        events.append("read")

    monkeypatch.setattr(ConnectionHandle, "closed", watched_closed)
    loop = asyncio.get_running_loop()
    loop.add_reader(reader, on_read)
    try:
        closes = DeferredCloses(loop, chunk=2)
        for handle in handles:
            closes.add(handle, CloseCode.ABNORMAL_CLOSURE)
        writer.send(b"x")  # ready at the next iteration's poll, as the timer falls due
        assert events == [] and len(closes) == 5  # nothing done on the caller's turn
        for _ in range(50):
            if len(closes) == 0:
                break
            await asyncio.sleep(0.01)
    finally:
        loop.remove_reader(reader)
        reader.close()
        writer.close()
    code = CloseCode.ABNORMAL_CLOSURE
    assert events == [
        "read",
        f"close 0 {code}",
        f"close 1 {code}",
        "read",
        f"close 2 {code}",
        f"close 3 {code}",
        f"close 4 {code}",
    ]
    wait_until(lambda: tree.ledger.total() == 0, what="every slot freed")
    wait_until(lambda: all(not h.is_open for h in handles), what="every handle closed")


async def test_a_close_queued_on_a_quiet_loop_is_done_at_its_next_iteration(
    tree: SupervisionTree,
) -> None:
    handle = handle_of(connect(tree, "alice")[0])
    closes = DeferredCloses(asyncio.get_running_loop())
    closes.add(handle, CloseCode.ABNORMAL_CLOSURE)
    assert handle.is_open
    await asyncio.sleep(0)  # the timer falls due at once
    await asyncio.sleep(0)
    assert not handle.is_open and len(closes) == 0
    wait_until(lambda: tree.ledger.usage("alice") == 0, what="the slot freed")
