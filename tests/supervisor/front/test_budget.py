"""The connection budget: its decisions, its sum, and the constants behind its terms, measured."""

from __future__ import annotations

import asyncio
import gc
import tracemalloc
import zlib
from collections.abc import Callable

import pytest
import websockets.asyncio.messages
import websockets.http11
from websockets.frames import Frame, Opcode
from websockets.server import ServerProtocol

from actors.codes import ServerCloseCode
from actors.context import UserExecutionContext
from supervisor.config.load import load_profile
from supervisor.front.apps import EchoApp
from supervisor.front.budget import (
    ASSEMBLER_HIGH,
    CONNECTION_FIXED,
    DEFLATE_WINDOW_BITS,
    FRAGMENT_OVERHEAD,
    JSON_EXPANSION,
    MAX_FRAGMENTS,
    MAX_HEADERS,
    READ_CHUNK,
    WRITE_HIGH,
    ZLIB_STATE,
    ConnectionBudget,
)
from supervisor.front.protocol import JsonProtocol
from tests.helpers import make_config

KIB, MIB = 1024, 1024 * 1024


def peak_of(work: Callable[[], object]) -> int:
    """The most ``work`` held at once beyond what was there before, traced by tracemalloc."""
    return _traced(work)[1]


def held_by(work: Callable[[], object]) -> int:
    """What ``work`` still holds once it has returned (what it kept), traced by tracemalloc."""
    return _traced(work)[0]


def _traced(work: Callable[[], object]) -> tuple[int, int]:
    gc.collect()
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        work()
        gc.collect()
        now, peak = tracemalloc.get_traced_memory()
        return now - before, peak - before
    finally:
        tracemalloc.stop()


# --- decisions ----------------------------------------------------------------------------


def test_a_handshake_over_its_bytes_is_refused_and_one_at_them_is_not() -> None:
    budget = ConnectionBudget(max_handshake_bytes=16 * KIB)
    assert not budget.handshake_over(16 * KIB)
    assert budget.handshake_over(16 * KIB + 1)


def test_an_inbox_takes_a_message_alone_whatever_its_size_but_not_past_its_budget() -> None:
    budget = ConnectionBudget(max_inbound_bytes=2 * MIB)
    assert not budget.inbound_over(waiting=0, cost=5 * MIB)  # alone: bounded by the frame size
    assert not budget.inbound_over(waiting=1 * MIB, cost=1 * MIB)
    assert budget.inbound_over(waiting=1 * MIB, cost=1 * MIB + 1)
    assert budget.inbound_overflow() == (ServerCloseCode.POLICY, "inbound backlog")


def test_an_outbound_queue_is_over_past_its_frames_or_past_its_bytes() -> None:
    budget = ConnectionBudget(max_outbound_bytes=4 * MIB, max_outbound_frames=1000)
    assert not budget.outbound_over(frames=1000, queued=4 * MIB)
    assert budget.outbound_over(frames=1001, queued=10)
    assert budget.outbound_over(frames=1, queued=4 * MIB + 1)
    assert budget.outbound_overflow() == (ServerCloseCode.SLOW_CONSUMER, "slow consumer")


def test_a_write_buffer_over_its_ceiling_is_a_control_flood_or_a_slow_consumer() -> None:
    budget = ConnectionBudget(max_outbound_bytes=4 * MIB)
    assert budget.write_ceiling == WRITE_HIGH + READ_CHUNK + 4 * MIB
    assert not budget.write_over(budget.write_ceiling)
    assert budget.write_over(budget.write_ceiling + 1)
    flood, slow = budget.write_overflow(control_frames=3), budget.write_overflow(control_frames=0)
    assert flood == (ServerCloseCode.POLICY, "control frame flood")
    assert slow == (ServerCloseCode.SLOW_CONSUMER, "slow consumer")


# --- the sum ------------------------------------------------------------------------------


def test_the_production_budget_adds_up_to_the_numbers_docs_security_states() -> None:
    budget = ConnectionBudget.from_config(load_profile("production", env={}))
    assert budget == ConnectionBudget()  # the defaults are production's
    terms = budget.terms()
    assert terms == {
        "handshake": 80 * KIB,
        "frame being read": 3 * MIB + 256 * KIB,
        "assembler": 6 * MIB,
        "inbox": 2 * MIB,
        "parse": 40 * MIB,
        "outbound queue": 4 * MIB,
        "transport": 4 * MIB + 288 * KIB,
        "compression": 64 * KIB,
        "connection": 64 * KIB,
    }
    assert budget.per_connection == sum(terms.values())
    assert round(budget.per_connection / MIB, 1) == 59.7
    # 20 connections; a parse is transient, at most one per thread that parses (2 workers + loop)
    assert round(budget.per_user(20, parsers=3) / MIB) == 515
    assert budget.per_user(1, parsers=3) == budget.per_connection


def test_the_budget_follows_the_config_it_is_built_from() -> None:
    config = make_config(
        {
            "server": {"max_message_size": 65536, "compression": "none"},
            "limits": {
                "max_handshake_bytes": 8192,
                "max_inbound_bytes": 262144,
                "max_outbound_bytes": 262144,
                "max_outbound_queue": 50,
            },
        }
    )
    budget = ConnectionBudget.from_config(config)
    assert budget == ConnectionBudget(65536, 8192, 262144, 262144, 50, compression=False)
    assert budget.terms()["compression"] == 0
    assert budget.terms()["parse"] == JSON_EXPANSION * 65536


# --- the constants, measured ------------------------------------------------------------


def test_the_read_chunk_is_what_asyncio_reads_at_once() -> None:
    import asyncio.selector_events  # noqa: PLC0415

    transport = asyncio.selector_events._SelectorSocketTransport  # type: ignore[attr-defined]
    assert transport.max_size == READ_CHUNK


def test_the_fragment_and_header_counts_are_websockets_own() -> None:
    assert websockets.asyncio.messages.MAX_FRAGMENTS == MAX_FRAGMENTS
    assert websockets.http11.MAX_NUM_HEADERS == MAX_HEADERS


def test_a_parsed_handshake_of_the_most_headers_and_bytes_fits_its_term() -> None:
    limit = ConnectionBudget().max_handshake_bytes
    lines = ["GET /ws?user_id=alice HTTP/1.1", "Host: x", "Upgrade: websocket"]
    lines += ["Connection: Upgrade", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=="]
    lines += ["Sec-WebSocket-Version: 13"]
    more = MAX_HEADERS - (len(lines) - 1)  # the request line is not a header
    room = limit - len("\r\n".join(lines)) - 4 - more * 2
    lines += [f"X-{n:03d}: " + "a" * (room // more - 7) for n in range(more)]
    head = ("\r\n".join(lines) + "\r\n\r\n").encode()
    assert limit - 2 * MAX_HEADERS <= len(head) <= limit
    kept: list[object] = []

    def parse() -> None:
        protocol = ServerProtocol()
        protocol.receive_data(head)
        kept.append(protocol)

    assert held_by(parse) <= ConnectionBudget().terms()["handshake"]  # measured: about 57 KiB
    [request] = kept[0].events_received()  # type: ignore[attr-defined]
    assert len(request.headers) == MAX_HEADERS


def test_a_fragment_costs_no_more_than_its_overhead_beyond_its_data() -> None:
    frames: list[Frame] = []

    def assemble() -> None:
        frames.extend(Frame(Opcode.CONT, b"x", fin=False) for _ in range(MAX_FRAGMENTS))

    assert peak_of(assemble) <= MAX_FRAGMENTS * (FRAGMENT_OVERHEAD + 1)


@pytest.mark.parametrize(
    "item",
    ["{}", "[]", "[[]]", '{"a":0}', "0", "0.5", '"ab"', "1234567890123", "true", "1e5"],
)
def test_parsing_and_echoing_a_frame_holds_at_most_its_expansion_times_its_size(item: str) -> None:
    size = 256 * KIB
    text = '{"type":"echo","data":[' + ",".join([item] * (size // (len(item) + 1))) + "]}"
    protocol, out = JsonProtocol(EchoApp()), list[str]()
    context = UserExecutionContext.from_websocket_request("alice")
    peak = peak_of(lambda: protocol(context, text, out.append))
    assert out and peak <= JSON_EXPANSION * len(text), peak / len(text)


def test_an_escaped_echo_stays_under_three_times_its_message() -> None:
    text = '{"type":"echo","data":"' + "\u0416" * (64 * KIB) + '"}'  # 2-byte UTF-8 each
    out: list[str] = []
    JsonProtocol(EchoApp())(UserExecutionContext.from_websocket_request("a"), text, out.append)
    assert len(out[0]) <= 3 * len(text.encode()) + 64


def test_one_connection_s_compression_state_fits_its_term() -> None:
    kept: list[object] = []

    def states() -> None:
        bits = DEFLATE_WINDOW_BITS
        deflate = zlib.compressobj(wbits=-bits, memLevel=5)
        inflate = zlib.decompressobj(wbits=-bits)
        inflate.decompress(deflate.compress(b"warm" * 4096) + deflate.flush(zlib.Z_SYNC_FLUSH))
        kept.extend((deflate, inflate))

    assert held_by(states) <= ZLIB_STATE


def test_the_assembler_pauses_reading_past_its_high_water_mark() -> None:
    assert ASSEMBLER_HIGH == 4  # what the front passes as max_queue, and the budget counts


async def raw_client(port: int, user: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A WebSocket client of a few objects (asyncio streams), that offers compression."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        f"GET /ws?user_id={user} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        "Sec-WebSocket-Version: 13\r\n"
        "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n".encode()
    )
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101") and b"permessage-deflate" in head, head
    first = await reader.readexactly(2)  # the welcome frame: short, unmasked
    await reader.readexactly(first[1] & 0x7F)
    return reader, writer


def test_an_idle_connection_s_objects_fit_their_term() -> None:
    """Fifty idle connections of one user to a real daemon: what each adds, traced."""
    from tests.integration.harness import running_daemon  # noqa: PLC0415

    async def measure() -> int:
        async with running_daemon({"quota": {"max_managers_per_user": 60}}) as daemon:
            port = daemon.front.port
            _, warm = await raw_client(port, "alice")  # the user's supervisor exists from here
            gc.collect()
            tracemalloc.start()
            try:
                before = tracemalloc.get_traced_memory()[0]
                clients = [await raw_client(port, "alice") for _ in range(50)]
                await asyncio.sleep(0.2)
                gc.collect()
                held = tracemalloc.get_traced_memory()[0] - before
            finally:
                tracemalloc.stop()
            for _, writer in [*clients, (None, warm)]:
                writer.close()
            return held // 50  # the client's streams are in it too: an upper bound

    assert asyncio.run(measure()) <= CONNECTION_FIXED + ZLIB_STATE  # measured: about 71 KiB
