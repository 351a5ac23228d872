"""Memory under attack: one connection driven by each byte route, the daemon's RSS read from /proc.

The daemon is a real process on loopback, serving ``config/dev.toml``
(production's limits) with a keepalive of 1 s + 1 s so that the reaps come
within the test. Its resident set (``VmRSS`` of ``/proc/<pid>/status``) is
sampled every 20 ms from just before each attack to its end; the peak's
growth over the value after a warm-up must stay within one connection's
worst case (:class:`~supervisor.front.budget.ConnectionBudget`, built from
the same configuration) plus :data:`MARGIN`. Each test also checks the
close its route calls for (docs/SECURITY.md), read from the wire or from the
daemon's log line, and that the slot is free afterwards.

Before the fixes these attacks took the daemon's RSS up by 221 MB (a ping
flood), 941 MB (an echo flood, plain or deflated) and 100 MB (an inbox
flood): every test here then failed on its RSS bound, its close, or both.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import zlib
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

import attrs
import pytest

from supervisor.config.load import load_config
from supervisor.front.budget import ConnectionBudget
from tests.hostile import close_frame, frame, handshake, http_request, open_raw, read_to_eof
from tests.integration.harness import ROOT, DaemonProcess, wait_for

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(90)]

DEV = ROOT / "config" / "dev.toml"
KEEPALIVE = {
    "WS_SUPERVISOR_TIMEOUTS_PING_INTERVAL": "1.0",
    "WS_SUPERVISOR_TIMEOUTS_PING_TIMEOUT": "1.0",
}
REAPED = 2.0 + 2.0
"""Interval + timeout, and as much again for a loaded machine: when a silent peer is gone."""
MIB = 1024 * 1024
MARGIN = 24 * MIB
"""What RSS may grow beyond the budget: the allocator's arenas, freed memory it keeps, the
threads' stacks touched. Measured growth under these attacks: 1 to 12 MiB."""
KEY = b"\x01\x02\x03\x04"


async def rss(pid: int) -> int:
    """The process's resident set, in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {pid}")


@attrs.define
class Node:
    """A daemon process, its configuration's budget, and its RSS."""

    proc: DaemonProcess
    budget: ConnectionBudget
    baseline: int = 0
    peak: int = 0
    _sampler: asyncio.Task[None] | None = None

    @property
    def pid(self) -> int:
        return self.proc.proc.pid

    async def measure(self) -> None:
        """Take the baseline now and sample the peak until :meth:`growth` is read."""
        self.baseline = self.peak = await rss(self.pid)

        async def sample() -> None:
            while True:
                self.peak = max(self.peak, await rss(self.pid))
                await asyncio.sleep(0.02)

        self._sampler = asyncio.ensure_future(sample())

    async def growth(self) -> int:
        """The peak's growth over the baseline, with the budget's bound checked."""
        await asyncio.sleep(0.1)
        assert self._sampler is not None
        self._sampler.cancel()
        grown = self.peak - self.baseline
        bound = self.budget.per_connection + MARGIN
        test = os.environ.get("PYTEST_CURRENT_TEST", "?").split("::")[-1].split(" ")[0]
        print(
            f"\n{test}: RSS {self.baseline / MIB:.1f} MiB, peak +{grown / MIB:.1f} MiB"
            f" (bound {bound / MIB:.1f} MiB)"
        )
        assert grown <= bound, f"RSS grew {grown / MIB:.1f} MiB, over {bound / MIB:.1f}"
        return grown

    async def used(self) -> int:
        """Slots held on the node, from the admin listener."""
        _, state = await asyncio.to_thread(self.proc.get, "/debug/state")
        return int(state["root"]["node_used"])

    async def push(self, user: str, data: str) -> int:
        body = json.dumps({"user_id": user, "message": {"type": "push", "data": data}}).encode()
        status, answer = await http_request(self.proc.admin_port, "POST", "/v1/push", body)
        assert status == 200, answer
        return int(json.loads(answer)["delivered"])

    async def logged(self, text: str, timeout: float = 5.0) -> None:
        await wait_for(lambda: text in self.proc.output(), timeout, f"the log line {text!r}")


@contextlib.asynccontextmanager
async def node(env: Mapping[str, str] | None = None) -> AsyncIterator[Node]:
    """The dev profile as a real process on loopback, warmed up, then stopped."""
    proc = DaemonProcess(DEV, {**KEEPALIVE, "PYTHONPATH": str(ROOT), **(env or {})})
    try:
        await asyncio.to_thread(proc.wait_ready)
        config = load_config(DEV, env=proc.env)
        daemon = Node(proc, ConnectionBudget.from_config(config))
        reader, writer = await open_raw(proc.port, "warmup")  # imports, caches, first arenas
        writer.write(frame(0x1, b'{"type": "echo", "data": "warm"}') + frame(0x8, b"\x03\xe8"))
        await read_to_eof(reader)
        writer.close()  # its EOF ends the closing handshake: the slot is free, not left to a reap
        await daemon.push("nobody", "warm")
        await wait_for_free(daemon)
        await asyncio.sleep(0.2)
        yield daemon
    finally:
        proc.signal(signal.SIGTERM)
        with contextlib.suppress(Exception):
            await asyncio.to_thread(proc.wait, 20)
        proc.kill()


def kernel_buffers() -> int:
    """The most the kernel may hold between a loopback writer and a reader that stopped reading.

    The writer's send buffer and the reader's receive buffer, each at the
    largest TCP autotuning may grow it to (``tcp_wmem``, ``tcp_rmem``).
    """
    sysctl = Path("/proc/sys/net/ipv4")
    wmem = int((sysctl / "tcp_wmem").read_text().split()[2])
    rmem = int((sysctl / "tcp_rmem").read_text().split()[2])
    return wmem + rmem


async def flood(writer: asyncio.StreamWriter, chunk: bytes, seconds: float) -> tuple[int, bool]:
    """Write ``chunk`` as fast as the socket takes it, for ``seconds``: (bytes sent, stalled).

    Stalled: a write waited more than a second, the server having stopped reading.
    """
    sent, loop = 0, asyncio.get_running_loop()
    deadline = loop.time() + seconds
    with contextlib.suppress(ConnectionError):
        while loop.time() < deadline:
            writer.write(chunk)
            try:
                await asyncio.wait_for(writer.drain(), 1.0)
            except TimeoutError:
                return sent, True
            sent += len(chunk)
    return sent, False


# --- control frames -----------------------------------------------------------------------


async def test_a_ping_flood_is_closed_with_1008_after_its_burst_and_holds_nothing() -> None:
    async with node() as daemon:
        reader, writer = await open_raw(daemon.proc.port, "pinger")
        answer = asyncio.ensure_future(read_to_eof(reader, timeout=15))  # it reads its pongs
        await daemon.measure()
        sent, _ = await flood(writer, frame(0x9, b"p" * 125, key=KEY) * 500, 5.0)
        assert close_frame(await answer) == (1008, "control frame rate exceeded")
        # then it was no longer read: what it sent is the burst and what the kernel buffers
        # hold (36 MiB at most here; 4.3 MB seen), where before the fix it was 288 MB in 20 s
        assert sent < kernel_buffers() + MIB
        await daemon.growth()
        await daemon.logged("code=1008 reason=control frame rate exceeded")
        await wait_for_free(daemon)
        writer.close()


async def test_a_ping_flood_that_never_reads_stops_being_read_and_is_reaped_in_time() -> None:
    rates = {  # a rate it stays under: what holds it is back-pressure, then the keepalive
        "WS_SUPERVISOR_LIMITS_MESSAGES_PER_SECOND": "1000000.0",
        "WS_SUPERVISOR_LIMITS_MESSAGE_BURST": "1000000",
    }
    async with node(rates) as daemon:
        _, writer = await open_raw(daemon.proc.port, "pinger", rcvbuf=4096)
        await daemon.measure()
        loop = asyncio.get_running_loop()
        sent, stalled = await flood(writer, frame(0x9, b"p" * 125, key=KEY) * 500, 8.0)
        stopped = loop.time()
        assert stalled, sent  # the server stopped reading it: its pongs were not taken
        await daemon.logged("keepalive missed", timeout=REAPED)
        assert loop.time() - stopped <= REAPED
        await daemon.growth()
        await wait_for_free(daemon)
        writer.transport.abort()


async def test_a_silent_client_is_reaped_within_interval_plus_timeout() -> None:
    async with node() as daemon:
        reader, writer = await open_raw(daemon.proc.port, "silent")
        started = asyncio.get_running_loop().time()
        await read_to_eof(reader, timeout=REAPED + 1)  # aborted: no close frame, no pong
        assert asyncio.get_running_loop().time() - started <= REAPED + 1
        await daemon.logged("keepalive missed")
        assert "code=4003" in daemon.proc.output()
        await wait_for_free(daemon)
        writer.close()


# --- outbound -----------------------------------------------------------------------------


async def test_pushes_to_a_client_that_never_reads_are_shed_with_4004_at_the_bytes_budget() -> None:
    async with node() as daemon:
        _, writer = await open_raw(daemon.proc.port, "sink", rcvbuf=4096)
        await daemon.measure()
        data = os.urandom(30_000).hex()  # 60 KB pushes, the admin body limit's size
        pushed = 0
        while await daemon.push("sink", data):
            pushed += len(data)
            assert pushed < 64 * MIB, "never shed"
        # the budget, the transport's buffer and the kernel's (a few MiB) took what was pushed
        assert pushed <= daemon.budget.max_outbound_bytes + daemon.budget.write_ceiling + 8 * MIB
        await daemon.logged("code=4004 reason=slow consumer")
        await daemon.growth()
        await wait_for_free(daemon)
        writer.transport.abort()


@pytest.mark.parametrize("deflate", [False, True], ids=["plain", "deflated"])
async def test_an_echo_flood_that_never_reads_is_back_pressured_then_reaped(deflate: bool) -> None:
    async with node() as daemon:
        extension = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
        _, writer = await open_raw(
            daemon.proc.port, "echoer", rcvbuf=4096, extra=extension if deflate else ""
        )
        message = json.dumps({"type": "echo", "data": "x" * 976_000}).encode()
        if deflate:  # about 1 KB on the wire for each 976 KB message (no context kept)
            squeeze = zlib.compressobj(wbits=-12)
            payload = squeeze.compress(message) + squeeze.flush(zlib.Z_SYNC_FLUSH)
            wire = frame(0x1, payload[:-4], first=0xC1, key=KEY)  # FIN, RSV1, text
        else:
            wire = frame(0x1, message, key=KEY)
        await daemon.measure()
        loop, sent = asyncio.get_running_loop(), 0
        deadline = loop.time() + 8.0
        with contextlib.suppress(ConnectionError, TimeoutError):
            while loop.time() < deadline:  # 40 a second: under the rate
                writer.write(wire)
                await asyncio.wait_for(writer.drain(), 1.0)  # until the server stops reading
                sent += 1
                await asyncio.sleep(0.025)
        assert sent < 320  # it stopped being read before the 8 s were over
        await daemon.logged("keepalive missed", timeout=REAPED + 2)
        grown = await daemon.growth()
        assert grown < 60 * MIB  # before the fix: about 1,000 MB, plain or deflated
        await wait_for_free(daemon)
        writer.transport.abort()


# --- inbound ------------------------------------------------------------------------------


async def test_an_inbox_flood_against_a_slow_app_is_closed_with_1008_at_the_bytes_budget() -> None:
    async with node({"WS_SUPERVISOR_SERVER_APP": "tests.apps.slow:SlowEchoApp"}) as daemon:
        reader, writer = await open_raw(daemon.proc.port, "flooder")
        answer = asyncio.ensure_future(read_to_eof(reader, timeout=15))
        wire = frame(0x1, json.dumps({"type": "echo", "data": "x" * 976_000}).encode(), key=KEY)
        await daemon.measure()
        with contextlib.suppress(ConnectionError):
            for _ in range(100):  # within the burst: no 1008 for the rate
                writer.write(wire)
                await writer.drain()
        assert close_frame(await answer) == (1008, "inbound backlog")
        await daemon.growth()  # before the fix: 100 MB waited in the inbox
        await wait_for_free(daemon)
        writer.close()


async def test_handshakes_over_the_handshake_bytes_get_431_and_keep_nothing() -> None:
    async with node() as daemon:
        await daemon.measure()
        pad = "".join(f"X-Pad-{n}: {'a' * 8000}\r\n" for n in range(120))  # 960 KB of headers
        answers = []
        for n in range(30):
            reader, writer = await asyncio.open_connection("127.0.0.1", daemon.proc.port)
            writer.write(handshake(f"/ws?user_id=hoard{n}", extra=pad).encode())
            with contextlib.suppress(ConnectionError):
                await writer.drain()
            answers.append(await read_to_eof(reader))
            writer.close()
        assert all(a.startswith(b"HTTP/1.1 431 ") for a in answers), answers[0][:80]
        await daemon.growth()  # before the fix: 30 heads of 1 MB kept, one per connection
        assert await daemon.used() == 0


async def wait_for_free(daemon: Node, timeout: float = 5.0) -> None:
    """Every slot of the node is free (polled through the admin listener)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while await daemon.used():
        assert loop.time() < deadline, "a slot was still held"
        await asyncio.sleep(0.1)
