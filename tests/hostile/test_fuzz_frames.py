"""Hypothesis against one running daemon: whatever a client sends, it gets one answer per frame.

Each test function starts one daemon and one well-behaved user (bob) on the
test's event loop, then runs a hypothesis test on a worker thread; each
example submits a session of frames to the loop. A text frame gets exactly
one answer (pong, echo, or an error with a ``code``) and the connection stays
open, except for a frame over ``max_message_size`` (1009) and a text frame
that is not UTF-8 (1007). After every session: the fuzzing user holds no
slot, bob still answers a ping, and no close was filed under a foreign id.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable, Coroutine
from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from actors.codes import ServerCloseCode
from supervisor.daemon import Daemon
from supervisor.front.protocol import MAX_DEPTH
from tests.hostile import MISMATCHES, all_slots_free, open_client, ping_ok, recv_json, wait_for
from tests.integration.harness import running_daemon, ws_url

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(180)]

MAX_SIZE = 64 * 1024
"""``[server] max_message_size`` for these daemons: big frames stay cheap to send."""
QUIET = {"server": {"max_message_size": MAX_SIZE}, "timeouts": {"ping_interval": 60.0}}
"""No keepalive ping while hypothesis generates (websockets' ping payload uses ``random``)."""
ERROR_CODES = frozenset(
    {"invalid_json", "not_an_object", "missing_type", "too_deep", "unknown_type"}
)
EXAMPLE_TIMEOUT = 30.0


@attrs.frozen
class Op:
    """One frame to send: ``kind`` says what the daemon must answer."""

    kind: str  # "text" | "binary" | "too_big" | "bad_utf8"
    payload: str | bytes


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=15,
)
with_surrogates = st.text(
    st.characters(categories=["Cs", "Lu", "Ll", "Nd", "Zs", "So", "Co"]), min_size=1, max_size=30
)


def _nested(depth: int, objects: bool) -> str:
    return '{"a":' * depth + "1" + "}" * depth if objects else "[" * depth + "]" * depth


def _sized(size: int, unicode: str) -> str:
    """An echo frame of exactly ``size`` UTF-8 bytes (a little more if ``size`` is tiny)."""
    head = '{"type":"echo","data":"' + json.dumps(unicode, ensure_ascii=False)[1:-1]
    fill = max(0, size - len((head + '"}').encode()))
    return head + "x" * fill + '"}'


@st.composite
def ops(draw: st.DrawFn) -> Op:
    kind = draw(
        st.sampled_from(
            ["noise", "json", "typed", "deep", "huge", "huge_bad", "binary", "frame", "unknown"]
        )
    )
    if kind == "noise":
        return Op("text", draw(st.text(max_size=300)))
    if kind == "json":
        return Op("text", json.dumps(draw(json_values)))
    if kind == "typed":
        body = draw(st.dictionaries(st.text(max_size=8), json_values, max_size=5))
        body["type"] = draw(st.one_of(st.text(max_size=12), json_values))
        return Op("text", json.dumps(body))
    if kind == "deep":
        depth = draw(st.integers(min_value=MAX_DEPTH - 1, max_value=10_000))  # at most 60 KB
        inner = _nested(depth, draw(st.booleans()))
        return Op("text", draw(st.sampled_from([inner, '{"type":"echo","data":' + inner + "}"])))
    if kind == "huge":
        size = draw(st.integers(min_value=MAX_SIZE - 64, max_value=MAX_SIZE - 1))
        return Op("text", _sized(size, draw(st.text(max_size=10))))
    if kind == "huge_bad":
        size = draw(st.integers(min_value=1, max_value=MAX_SIZE - 1))
        return Op("text", draw(st.sampled_from(["[", "{", '"', "x"])) * size)
    if kind == "binary":
        raw = draw(st.one_of(st.binary(max_size=200), with_surrogates.map(_surrogate_bytes)))
        return Op("binary", raw)
    if kind == "unknown":
        return Op("text", json.dumps({"type": draw(st.text(max_size=40)), "data": 1}))
    kind_of = draw(st.sampled_from(["ping", "echo"]))
    return Op("text", json.dumps({"type": kind_of, "data": draw(json_values)}))


def _surrogate_bytes(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


@st.composite
def enders(draw: st.DrawFn) -> Op:
    """A last frame that ends the connection."""
    if draw(st.booleans()):
        size = draw(st.integers(min_value=MAX_SIZE + 1, max_value=MAX_SIZE + 4096))
        return Op("too_big", _sized(size, draw(st.text(max_size=10))))
    return Op("bad_utf8", _surrogate_bytes(draw(with_surrogates)) + b"\xff")


sessions = st.tuples(st.lists(ops(), min_size=1, max_size=30), st.none() | enders())


def _check_answer(answer: Any) -> None:
    assert isinstance(answer, dict), answer
    assert answer.get("type") in ("pong", "echo", "error"), answer
    if answer["type"] == "error":
        assert answer.get("code") in ERROR_CODES | {"binary_not_supported"}, answer


async def _session(daemon: Daemon, bob: ClientConnection, frames: list[Op], end: Op | None) -> None:
    url = ws_url(daemon, user="mallory")
    mallory, _ = await open_client(url, max_size=None, ping_interval=None)
    try:
        for op in frames:
            if op.kind == "text":
                await mallory.send(op.payload)
            else:
                await mallory.send(op.payload, text=False)
            _check_answer(await recv_json(mallory))
        if end is None:
            await ping_ok(mallory)  # nothing beyond one answer per frame was queued
        else:
            await mallory.send(end.payload, text=True)
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(mallory.recv(), 5)
            expected = ServerCloseCode.TOO_BIG if end.kind == "too_big" else 1007
            assert mallory.close_code == expected, (end.kind, mallory.close_code)
    finally:
        await mallory.close()
    await wait_for(lambda: daemon.tree.ledger.usage("mallory") == 0, what="mallory's slot free")
    assert daemon.tree.ledger.usage("bob") == 1
    assert daemon.metrics.value(MISMATCHES) == 0
    await ping_ok(bob)


def _on_loop(loop: asyncio.AbstractEventLoop) -> Callable[[Coroutine[Any, Any, None]], None]:
    """Run a coroutine on ``loop`` from the hypothesis thread, bounded in time."""

    def run(coroutine: Coroutine[Any, Any, None]) -> None:
        future = asyncio.run_coroutine_threadsafe(coroutine, loop)
        try:
            future.result(EXAMPLE_TIMEOUT)
        finally:
            future.cancel()

    return run


FUZZ = settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


async def test_every_fuzzed_frame_gets_one_answer_and_another_user_is_never_disturbed() -> None:
    async with running_daemon(QUIET) as daemon:
        bob, _ = await open_client(ws_url(daemon, user="bob"), ping_interval=None)
        run = _on_loop(asyncio.get_running_loop())

        @FUZZ
        @given(sessions)
        def fuzz(session: tuple[list[Op], Op | None]) -> None:
            run(_session(daemon, bob, *session))

        await asyncio.to_thread(fuzz)
        await ping_ok(bob)
        await bob.close()
        await all_slots_free(daemon)


async def test_frames_at_the_default_size_limit_are_echoed_and_one_byte_more_closes_1009() -> None:
    async with running_daemon() as daemon:
        limit = daemon.config.server.max_message_size
        bob, _ = await open_client(ws_url(daemon, user="bob"))
        mallory, _ = await open_client(ws_url(daemon, user="mallory"), max_size=None)
        for size in (limit - 1, limit - 2):
            await mallory.send(_sized(size, "é\u2603"))
            answer = await recv_json(mallory, 10)
            assert answer["type"] == "echo" and len(answer["data"]) > limit - 64
        await mallory.send("[" * (limit - 1))
        assert (await recv_json(mallory, 10))["code"] == "invalid_json"
        await ping_ok(bob)
        await mallory.send(_sized(limit + 1, ""))
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(mallory.recv(), 10)
        assert mallory.close_code == ServerCloseCode.TOO_BIG
        await ping_ok(bob)
        await bob.close()
        await all_slots_free(daemon)


async def test_lone_surrogates_get_an_error_as_binary_and_close_1007_as_text() -> None:
    async with running_daemon() as daemon:
        mallory, _ = await open_client(ws_url(daemon, user="mallory"))
        raw = _surrogate_bytes('{"type":"echo","data":"\ud800\udfff\udc00"}')
        await mallory.send(raw, text=False)
        assert (await recv_json(mallory))["code"] == "binary_not_supported"
        await ping_ok(mallory)
        await mallory.send(raw, text=True)
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(mallory.recv(), 5)
        assert mallory.close_code == 1007  # invalid frame payload data
        with contextlib.suppress(ConnectionClosed):
            await mallory.close()
        await all_slots_free(daemon)
