#!/usr/bin/env python3
"""Benchmark ws-supervisor against a bare websockets echo server, on loopback.

Both servers speak the same JSON protocol (a welcome frame on connect, then
``echo`` and ``ping`` answered) with the same compression and keepalive
settings, each in its own process, and the load generator runs in separate
processes too. In each round both servers run side by side: idle memory and
the memory scenario go one server after the other, and each timed scenario
(churn, throughput, round trips) goes in :data:`SLICES` slices per server in
ABBA order (bare, supervised, supervised, bare, ...), so that the host's
drift within the round falls on both alike. The scenarios:

- churn: 50 concurrent clients loop connect, welcome, one echo, close;
- throughput: 100 connections ping-pong echo frames as fast as they can;
- rtt: one connection, sequential echo round trips at a low rate;
- memory: N idle connections, server RSS delta per connection.

Server CPU is read from ``/proc/PID/stat`` (every thread of the server
process), memory from ``/proc/PID/status``. Linux only.

With ``--workers N`` each round also runs every scenario against
``ws-supervisor serve --workers N`` (the master and N worker processes; CPU,
memory and threads summed over the process tree) and compares it with the
single-process daemon: server CPU per connection with N workers against one
(issue #23's target: within 1.05x).

With ``--redis`` each round also runs churn against ws-supervisor with the
Redis quota ledger (``[quota] backend = "redis"``), on a redis-server the
bench starts on a free loopback port and stops at the end: connections/s,
connect latency and server CPU as ratios to bare websockets and to the
in-memory ledger, and the Redis requests per connection (from the server's
slow log, with every command logged: ACQUIRE per admission, RELEASE, renewals).
Each round then churns the same way on a master with one replica watched by
three sentinels (of its own; the sentinels at Redis's own periods), on two
nodes running side by side, one with ``[redis] url`` a plain URL of the
master and one a ``redis+sentinel://`` URL, in slices in ABBA order as
above, and the bench reports their paired ratio: what configuring Sentinel
costs in steady state.
After the rounds: local and cross-node pushes' latencies on two nodes, and
what a ``WAIT 1`` after every admission would add (``scripts/_cluster_bench.py``).

The supervised server runs its built-in ``EchoApp``, whose frames are
handled on the event loop (``runs_inline``); ``--app
supervisor.front.apps:WorkerEchoApp`` runs the same echo on the manager workers,
as any app that may block.

The supervised server logs at the level the profiles ship (INFO), as users
run it; ``--log-level`` sets another. Beside CPU time, the bench reads the
server's context switches (every thread's, from ``/proc/PID/task``) and the
lines its log gained per churned connection.

Usage: scripts/bench [--rounds 3] [--quick] [--redis] [--workers N] [--compression none]
       [--json FILE] [--plot FILE.png] [--app package.module:Name] [--log-level INFO]

Internal modes (started by the tool itself): ``--serve-bare`` and ``--client SCENARIO``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import importlib.metadata
import json
import math
import os
import platform
import queue
import re
import secrets
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from types import FrameType
from typing import Any, Literal, TypeVar
from urllib.parse import parse_qsl, urlsplit

from _cluster_bench import push_latency, wait_cost  # scripts/ is on sys.path, as below
from _sentinels import SentinelSet
from _toolkit import (  # scripts/ is on sys.path when run as a script
    HOST,
    ROOT,
    RedisServer,
    exec_child,
    free_port,
    http_get,
    percentile,
    stop_process,
    supervisor_command,
    tail_file,
)
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException

T = TypeVar("T")

CLK_TCK = os.sysconf("SC_CLK_TCK")
EXIT_NO_MATPLOTLIB = 2
SHIPPED_LOG_LEVEL = "INFO"
"""The ``[logging] level`` every profile ships (``config/*.toml``): the bench's default."""

# --- small shared helpers ------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """utime + stime of every thread of ``pid``, in seconds."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def process_tree(pid: int) -> list[int]:
    """``pid`` and every process under it (``serve --workers``: the master and its workers)."""
    found, waiting = [], [pid]
    while waiting:
        current = waiting.pop()
        found.append(current)
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{current}/task").iterdir():
                waiting += [int(child) for child in (task / "children").read_text().split()]
    return found


def context_switches(pid: int) -> int:
    """Voluntary and involuntary context switches of every thread of ``pid`` so far.

    A thread woken per event (a log line, a frame) shows here long before it
    shows in CPU time, which a shared host moves by tens of percent.
    """
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):  # a thread that ended meanwhile
            for line in (task / "status").read_text().splitlines():
                if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                    total += int(line.split()[1])
    return total


def count_lines(path: Path) -> int:
    """Lines written to ``path`` so far (0 if it cannot be read)."""
    with contextlib.suppress(OSError):
        return path.read_bytes().count(b"\n")
    return 0


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS (KiB) and Threads of ``pid``."""
    found: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "Threads"):
            found[key] = int(value.split()[0])
    return found


def keepalive_settings() -> tuple[float, float, int]:
    """(ping_interval, ping_timeout, max_message_size) of the ci profile."""
    try:
        with (ROOT / "config" / "ci.toml").open("rb") as file:
            data = tomllib.load(file)
        timeouts, server = data["timeouts"], data["server"]
        return (
            float(timeouts["ping_interval"]),
            float(timeouts["ping_timeout"]),
            int(server["max_message_size"]),
        )
    except (OSError, KeyError, ValueError, tomllib.TOMLDecodeError):
        return 1.0, 1.0, 1 << 20


# --- the bare server ------------------------------------------------------------------

_PONG = json.dumps({"type": "pong"})


def _error(code: str, message: str) -> str:
    return json.dumps({"type": "error", "code": code, "message": message})


async def bare_server(
    port: int, compression: str, max_seconds: float, ping_interval: float = 0.0
) -> None:
    """A plain websockets server speaking the daemon's JSON protocol, nothing else.

    Keepalive as the ci profile's, or every ``ping_interval`` seconds if given.
    """
    from websockets.asyncio.server import ServerConnection, serve  # noqa: PLC0415

    ping_interval_ci, ping_timeout, max_size = keepalive_settings()
    if ping_interval:
        ping_timeout = ping_interval
    else:
        ping_interval = ping_interval_ci

    async def handler(ws: ServerConnection) -> None:
        query = dict(parse_qsl(urlsplit(ws.request.path if ws.request else "").query))
        thread_id = query.get("thread_id") or f"thread_{secrets.token_hex(8)}"
        welcome = {
            "type": "welcome",
            "user_id": query.get("user_id", ""),
            "thread_id": thread_id,
            "run_id": f"run_{secrets.token_hex(8)}",
            "request_id": f"req_{secrets.token_hex(8)}",
            "websocket_id": f"ws_{secrets.token_hex(8)}",
        }
        try:
            await ws.send(json.dumps(welcome))
            async for message in ws:
                if not isinstance(message, str):
                    await ws.send(_error("binary_not_supported", "frames are JSON text"))
                    continue
                try:
                    frame = json.loads(message)
                except ValueError:
                    await ws.send(_error("invalid_json", "not valid JSON"))
                    continue
                kind = frame.get("type") if isinstance(frame, dict) else None
                if kind == "echo":
                    await ws.send(json.dumps({"type": "echo", "data": frame.get("data")}))
                elif kind == "ping":
                    await ws.send(_PONG)
                else:
                    await ws.send(_error("unknown_type", "unknown frame type"))
        except ConnectionClosed:
            pass

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with serve(
        handler,
        HOST,
        port,
        compression="deflate" if compression == "deflate" else None,
        ping_interval=ping_interval,
        ping_timeout=ping_timeout,
        max_size=max_size,
    ) as server:
        print(f"serving ws://{HOST}:{port}/ws", flush=True)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), max_seconds)
        server.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(server.wait_closed(), 5)


# --- the load generator (one process per --client run) --------------------------------


class StdinLines:
    """stdin lines on the event loop, read by a daemon thread (never blocks the exit)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.lines: asyncio.Queue[str] = asyncio.Queue()

        def read() -> None:
            for line in sys.stdin:
                loop.call_soon_threadsafe(self.lines.put_nowait, line.strip())
            loop.call_soon_threadsafe(self.lines.put_nowait, "")

        threading.Thread(target=read, name="stdin", daemon=True).start()

    async def next(self) -> str:
        return await self.lines.get()


@dataclass
class ClientArgs:
    """What one client process does."""

    scenario: str
    url: str
    compression: str
    concurrency: int
    duration: float
    samples: int
    connections: int
    tag: str


def _emit(kind: str, payload: Any = None) -> None:
    print(kind if payload is None else f"{kind} {json.dumps(payload)}", flush=True)


class Load:
    """One client process's connections and error counts."""

    def __init__(self, spec: ClientArgs) -> None:
        self.spec = spec
        self.compression: Literal["deflate"] | None = (
            "deflate" if spec.compression == "deflate" else None
        )
        self.errors: Counter[str] = Counter()
        self.held: list[ClientConnection] = []

    async def open(self, user: str) -> ClientConnection:
        """Connect as ``user`` and read the welcome."""
        ws = await connect(
            f"{self.spec.url}?user_id={user}",
            compression=self.compression,
            ping_interval=None,
            open_timeout=15,
            close_timeout=5,
            max_size=None,
        )
        await asyncio.wait_for(ws.recv(), 15)
        return ws

    def count(self, error: BaseException) -> None:
        if isinstance(error, InvalidStatus):
            self.errors[f"http_{error.response.status_code}"] += 1
        else:
            self.errors[type(error).__name__] += 1

    async def setup(self) -> None:
        if self.spec.scenario in ("throughput", "rtt"):
            users = [f"{self.spec.tag}-u{i // 10}" for i in range(self.spec.concurrency)]
            self.held = list(await asyncio.gather(*(self.open(user) for user in users)))

    async def run(self) -> dict[str, Any]:
        runs = {
            "churn": self.churn,
            "throughput": self.throughput,
            "rtt": self.rtt,
            "memory": self.memory,
        }
        started = time.monotonic()
        result = await runs[self.spec.scenario]()
        result["elapsed"] = time.monotonic() - started
        result["errors"] = dict(self.errors)
        return result

    async def churn(self) -> dict[str, Any]:
        latencies: list[float] = []
        deadline = time.monotonic() + self.spec.duration

        async def loop(user: str) -> None:
            while time.monotonic() < deadline:
                t0 = time.perf_counter()
                try:
                    async with connect(
                        f"{self.spec.url}?user_id={user}",
                        compression=self.compression,
                        ping_interval=None,
                        open_timeout=15,
                        close_timeout=5,
                    ) as ws:
                        await asyncio.wait_for(ws.recv(), 15)
                        latency = time.perf_counter() - t0
                        await ws.send('{"type": "echo", "data": "churn"}')
                        await asyncio.wait_for(ws.recv(), 15)
                    latencies.append(latency)
                except (OSError, TimeoutError, WebSocketException) as error:
                    self.count(error)
                    await asyncio.sleep(0.01)

        await asyncio.gather(*(loop(f"{self.spec.tag}-c{i}") for i in range(self.spec.concurrency)))
        return {"cycles": len(latencies), "latencies": latencies}

    async def throughput(self) -> dict[str, Any]:
        deadline = time.monotonic() + self.spec.duration
        totals: list[int] = []

        async def pingpong(ws: ClientConnection) -> None:
            sent = 0
            try:
                while time.monotonic() < deadline:
                    await ws.send(f'{{"type": "echo", "data": {sent}}}')
                    reply = json.loads(await asyncio.wait_for(ws.recv(), 15))
                    if reply.get("data") != sent:
                        self.errors["bad_reply"] += 1
                    sent += 1
            except (OSError, TimeoutError, WebSocketException) as error:
                self.count(error)
            totals.append(sent)

        await asyncio.gather(*(pingpong(ws) for ws in self.held))
        return {"messages": sum(totals)}

    async def rtt(self) -> dict[str, Any]:
        (ws,) = self.held
        rtts: list[float] = []
        for sample in range(self.spec.samples):
            t0 = time.perf_counter()
            await ws.send(f'{{"type": "echo", "data": {sample}}}')
            await asyncio.wait_for(ws.recv(), 15)
            rtts.append(time.perf_counter() - t0)
            await asyncio.sleep(0.005)
        return {"rtts": rtts}

    async def memory(self) -> dict[str, Any]:
        gate = asyncio.Semaphore(50)

        async def idle(index: int) -> ClientConnection | None:
            async with gate:
                try:
                    return await self.open(f"{self.spec.tag}-m{index // 20}")
                except (OSError, TimeoutError, WebSocketException) as error:
                    self.count(error)
                    return None

        opened = await asyncio.gather(*(idle(i) for i in range(self.spec.connections)))
        self.held = [ws for ws in opened if ws is not None]
        await asyncio.sleep(1.5)  # let a keepalive round go by before the reading
        return {"opened": len(self.held)}

    async def teardown(self) -> None:
        await asyncio.gather(*(ws.close() for ws in self.held), return_exceptions=True)


async def client_main(spec: ClientArgs) -> None:
    """ready, wait for go, run, print the result, wait for end, tear down."""
    stdin = StdinLines(asyncio.get_running_loop())
    load = Load(spec)
    await load.setup()
    _emit("ready")
    if await stdin.next() == "go":
        _emit("result", await load.run())
        await stdin.next()  # "end" (or EOF: the parent is gone)
    await load.teardown()


# --- the orchestrator -----------------------------------------------------------------


class Children:
    """Every child process this run starts; all stopped at the end, whatever happens."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[str]] = []

    def start(self, argv: list[str], **kwargs: Any) -> subprocess.Popen[str]:
        wrapped = [sys.executable, str(Path(__file__).resolve()), "--exec", *argv]
        proc = subprocess.Popen(wrapped, text=True, start_new_session=True, **kwargs)
        self.procs.append(proc)
        return proc

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.terminate()
        deadline = time.monotonic() + 20
        for proc in self.procs:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        for proc in self.procs:
            for stream in (proc.stdin, proc.stdout):
                if stream is not None:
                    with contextlib.suppress(OSError):
                        stream.close()
        self.procs.clear()


class ClientProc:
    """One load-generator process and its stdout lines (read by a thread, bounded waits)."""

    def __init__(self, children: Children, argv: list[str]) -> None:
        self.proc = children.start(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=str(ROOT)
        )
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put("")

    def expect(self, kind: str, timeout: float) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise RuntimeError(f"client: no {kind!r} within {timeout:.0f}s") from None
            if not line:
                raise RuntimeError(f"client exited ({self.proc.poll()}) before {kind!r}")
            head, _, payload = line.partition(" ")
            if head == kind:
                return json.loads(payload) if payload else None

    def say(self, line: str) -> None:
        assert self.proc.stdin is not None
        with contextlib.suppress(BrokenPipeError, OSError):
            self.proc.stdin.write(line + "\n")
            self.proc.stdin.flush()

    def finish(self) -> None:
        self.say("end")
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


@dataclass
class Server:
    """One server under test, as a child process."""

    kind: str
    proc: subprocess.Popen[str]
    port: int
    admin_port: int | None
    log: Path

    @property
    def url(self) -> str:
        return f"ws://{HOST}:{self.port}/ws"

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        ports = [self.port] + ([self.admin_port] if self.admin_port else [])
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.kind} server exited {self.proc.returncode}:\n{self.tail()}"
                )
            try:
                for port in ports:
                    with socket.create_connection((HOST, port), timeout=0.5):
                        pass
                if self.admin_port is None or http_get(self.admin("/healthz"))[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"{self.kind} server not ready in {timeout:.0f}s:\n{self.tail()}")

    def admin(self, path: str) -> str:
        return f"http://{HOST}:{self.admin_port}{path}"

    def slots_held(self) -> int | None:
        if self.admin_port is None:
            return 0
        try:
            status, body = http_get(self.admin("/debug/state"))
            return int(json.loads(body)["root"]["slots_held"]) if status == 200 else None
        except (OSError, ValueError, KeyError):
            return None

    def quiesce(self, timeout: float = 10.0) -> None:
        """Wait until no slot is held (supervised) and let the server settle."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.slots_held() != 0:
            time.sleep(0.05)
        time.sleep(0.3)

    def stop(self) -> None:
        stop_process(self.proc)

    def tail(self, lines: int = 20) -> str:
        return tail_file(self.log, lines)


def start_server(
    kind: str,
    children: Children,
    compression: str,
    logdir: Path,
    *,
    ping_interval: float = 0.0,
    overrides: dict[str, str] | None = None,
    log_level: str = "WARNING",
    wrapper: Sequence[str] = (),
    workers: int = 1,
) -> Server:
    """Start the bare or the supervised server; ``ping_interval`` (and timeout) if not ci's.

    The supervised one logs at ``log_level`` (its ``[logging] level``).
    ``wrapper`` runs the server's interpreter under another program (valgrind).
    ``workers`` > 1: the supervised server is ``serve --workers N``.
    """
    port = free_port()
    log = logdir / f"{kind}-{port}.log"
    with log.open("w") as out:
        if kind == "bare":
            argv = [*wrapper, sys.executable, str(Path(__file__).resolve()), "--serve-bare"]
            argv += ["--port", str(port), "--compression", compression]
            argv += ["--ping-interval", str(ping_interval)]
            proc = children.start(argv, stdout=out, stderr=subprocess.STDOUT, cwd=str(ROOT))
            return Server(kind, proc, port, None, log)
        admin_port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("WS_SUPERVISOR_")}
        env.update(
            {
                "WS_SUPERVISOR_SERVER_HOST": HOST,
                "WS_SUPERVISOR_SERVER_PORT": str(port),
                "WS_SUPERVISOR_ADMIN_PORT": str(admin_port),
                "WS_SUPERVISOR_SERVER_COMPRESSION": compression,
                "WS_SUPERVISOR_QUOTA_MAX_MANAGERS_PER_USER": "1000",
                "WS_SUPERVISOR_QUOTA_NODE_MAX_MANAGERS": "20000",
                "WS_SUPERVISOR_THRESHOLDS_EMERGENCY_ACTION": "none",
                "WS_SUPERVISOR_LOGGING_LEVEL": log_level,
            }
        )
        if ping_interval:
            env["WS_SUPERVISOR_TIMEOUTS_PING_INTERVAL"] = str(ping_interval)
            env["WS_SUPERVISOR_TIMEOUTS_PING_TIMEOUT"] = str(ping_interval)
        env.update(overrides or {})
        command = [sys.executable, "-m", "supervisor.cli"] if wrapper else supervisor_command()
        argv = [*wrapper, *command, "serve", "--profile", "ci"]
        argv += ["--workers", str(workers)] if workers > 1 else []
        proc = children.start(argv, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=str(ROOT))
        return Server(kind, proc, port, admin_port, log)


@dataclass
class Settings:
    """Durations and sizes of one benchmark run."""

    rounds: int
    churn_seconds: float
    throughput_seconds: float
    rtt_samples: int
    idle_connections: int
    warmup_seconds: float
    client_procs: int
    compression: str
    app: str = ""
    log_level: str = SHIPPED_LOG_LEVEL
    workers: int = 1

    @classmethod
    def one_scenario(cls, seconds: float, compression: str, log_level: str) -> Settings:
        """One round of ``seconds`` per scenario, nothing else (a counting or profiling tool's)."""
        return cls(
            rounds=1,
            churn_seconds=seconds,
            throughput_seconds=seconds,
            rtt_samples=0,
            idle_connections=0,
            warmup_seconds=0.0,
            client_procs=1,
            compression=compression,
            log_level=log_level,
        )


@dataclass
class Probe:
    """The server at one moment: its process, and every process under it, summed."""

    cpu: float
    rss_kib: int
    threads: int
    switches: int = 0

    @classmethod
    def read(cls, pid: int) -> Probe:
        cpu, rss, threads, switches = 0.0, 0, 0, 0
        for each in process_tree(pid):
            with contextlib.suppress(OSError, ValueError):  # a process that just ended
                status = proc_status(each)
                cpu += cpu_seconds(each)
                rss += status.get("VmRSS", 0)
                threads += status.get("Threads", 0)
                switches += context_switches(each)
        return cls(cpu, rss, threads, switches)


def run_scenario(
    children: Children,
    server: Server,
    settings: Settings,
    scenario: str,
    *,
    procs: int = 1,
    concurrency: int = 1,
    duration: float = 0.0,
    on_go: Callable[[], object] | None = None,
    on_done: Callable[[], object] | None = None,
) -> tuple[list[dict[str, Any]], Probe, Probe]:
    """Run one scenario in ``procs`` client processes; (their results, probe before, after).

    ``on_go`` runs once every client is ready (connected, for throughput),
    just before they start; ``on_done`` once they have all reported, before
    they disconnect.
    """
    script = str(Path(__file__).resolve())
    clients: list[ClientProc] = []
    for index in range(procs):
        share = concurrency // procs + (1 if index < concurrency % procs else 0)
        argv = [sys.executable, script, "--client", scenario, "--url", server.url]
        argv += ["--compression", settings.compression, "--concurrency", str(share)]
        argv += ["--duration", str(duration), "--samples", str(settings.rtt_samples)]
        argv += ["--connections", str(settings.idle_connections // procs)]
        argv += ["--tag", f"{scenario}{index}"]
        clients.append(ClientProc(children, argv))
    try:
        for client in clients:
            client.expect("ready", 60)
        if on_go is not None:
            on_go()
        before = Probe.read(server.proc.pid)
        for client in clients:
            client.say("go")
        bound = duration + settings.rtt_samples * 0.1 + settings.idle_connections * 0.05 + 60
        results = [client.expect("result", bound) for client in clients]
        after = Probe.read(server.proc.pid)
        if on_done is not None:
            on_done()
    finally:
        for client in clients:
            client.finish()
    return results, before, after


def _errors(results: list[dict[str, Any]]) -> int:
    return sum(sum(result.get("errors", {}).values()) for result in results)


def churn_metrics(
    children: Children, server: Server, settings: Settings
) -> tuple[dict[str, float], list[float]]:
    """The timed churn scenario: (connections/s, connect latency, server CPU; the latencies)."""
    results, before, after = run_scenario(
        children,
        server,
        settings,
        "churn",
        procs=settings.client_procs,
        concurrency=50,
        duration=settings.churn_seconds,
    )
    latencies = [value for result in results for value in result["latencies"]]
    elapsed = max(float(result["elapsed"]) for result in results)
    metrics = {
        "conns_per_s": len(latencies) / elapsed,
        "connect_p50_ms": percentile(latencies, 50) * 1000,
        "connect_p99_ms": percentile(latencies, 99) * 1000,
        "cpu_ms_per_conn": (after.cpu - before.cpu) / max(1, len(latencies)) * 1000,
        "switches_per_conn": (after.switches - before.switches) / max(1, len(latencies)),
        "churn_errors": _errors(results),
        "churn_conns": len(latencies),
    }
    return metrics, latencies


SLICES = 4
"""Slices of each timed scenario per server in a round, in ABBA order."""


def interleaved(kinds: Sequence[str], measure: Callable[[str], T]) -> dict[str, list[T]]:
    """Each kind measured :data:`SLICES` times, the order reversed every other slice (ABBA).

    The servers run side by side the whole time, so the host's drift within
    the round falls on every kind alike.
    """
    parts: dict[str, list[T]] = {kind: [] for kind in kinds}
    for index in range(SLICES):
        for kind in kinds if index % 2 == 0 else kinds[::-1]:
            parts[kind].append(measure(kind))
    return parts


def memory_metrics(children: Children, server: Server, settings: Settings) -> dict[str, float]:
    """The idle connections' scenario: the server's RSS per connection, its threads meanwhile."""
    results, before, after = run_scenario(children, server, settings, "memory")
    opened = sum(int(result["opened"]) for result in results)
    return {
        "rss_kib_per_conn": (after.rss_kib - before.rss_kib) / max(1, opened),
        "threads_with_idle_conns": after.threads,
        "idle_conns_opened": opened,
    }


def churn_slice(
    kind: str, children: Children, server: Server, settings: Settings
) -> tuple[dict[str, float], list[float]]:
    """One slice of churn; under ``--workers``, the master's own CPU per connection too."""
    pid = server.proc.pid
    master_cpu = cpu_seconds(pid)  # the master's own, under --workers (else the server's)
    metrics, latencies = churn_metrics(children, server, settings)
    if kind == WORKERS_KIND:
        master_ms = (cpu_seconds(pid) - master_cpu) / max(1, len(latencies)) * 1000
        metrics["master_cpu_ms_per_conn"] = master_ms
    return metrics, latencies


def throughput_slice(children: Children, server: Server, settings: Settings) -> dict[str, float]:
    """One slice of throughput, as sums: messages, seconds, server CPU, switches, errors."""
    results, before, after = run_scenario(
        children,
        server,
        settings,
        "throughput",
        procs=settings.client_procs,
        concurrency=100,
        duration=settings.throughput_seconds,
    )
    return {
        "messages": sum(int(result["messages"]) for result in results),
        "elapsed": max(float(result["elapsed"]) for result in results),
        "cpu": after.cpu - before.cpu,
        "switches": after.switches - before.switches,
        "errors": _errors(results),
    }


def throughput_combined(parts: list[dict[str, float]]) -> dict[str, float]:
    """Slices of one server's throughput as one run: its messages over its time and CPU."""
    messages = max(1.0, sum(part["messages"] for part in parts))
    elapsed = sum(part["elapsed"] for part in parts)
    return {
        "msgs_per_s": messages / elapsed if elapsed else 0.0,
        "cpu_us_per_msg": sum(part["cpu"] for part in parts) / messages * 1e6,
        "switches_per_msg": sum(part["switches"] for part in parts) / messages,
        "throughput_errors": sum(part["errors"] for part in parts),
    }


def rtt_slice(children: Children, server: Server, settings: Settings) -> list[float]:
    """One slice of sequential round trips on one connection (seconds)."""
    results, _, _ = run_scenario(children, server, settings, "rtt")
    return [value for result in results for value in result["rtts"]]


def start_kind(kind: str, children: Children, settings: Settings, logdir: Path) -> Server:
    """One server of the round: bare, supervised, or supervised with ``--workers``."""
    overrides = {"WS_SUPERVISOR_SERVER_APP": settings.app} if settings.app else None
    workers = settings.workers if kind == WORKERS_KIND else 1
    server_kind = "bare" if kind == "bare" else "supervised"
    return start_server(
        server_kind,
        children,
        settings.compression,
        logdir,
        overrides=overrides,
        log_level=settings.log_level,
        workers=workers,
    )


def bench_round(
    kinds: Sequence[str], children: Children, settings: Settings, logdir: Path
) -> dict[str, tuple[dict[str, float], dict[str, list[float]]]]:
    """Every scenario against every kind, the servers side by side: {kind: (metrics, samples)}.

    Idle memory and the memory scenario run one server after the other;
    churn, throughput and round trips go in :data:`SLICES` ABBA slices each.
    """
    servers: dict[str, Server] = {}
    metrics: dict[str, dict[str, float]] = {kind: {} for kind in kinds}
    sliced = replace(
        settings,
        churn_seconds=settings.churn_seconds / SLICES,
        throughput_seconds=settings.throughput_seconds / SLICES,
        rtt_samples=max(1, settings.rtt_samples // SLICES),
    )
    try:
        for kind in kinds:
            servers[kind] = start_kind(kind, children, settings, logdir)
        for kind, server in servers.items():
            server.wait_ready()
            metrics[kind]["rss_idle_mib"] = Probe.read(server.proc.pid).rss_kib / 1024
        for kind, server in servers.items():
            warmup = settings.warmup_seconds
            run_scenario(children, server, settings, "churn", concurrency=10, duration=warmup)
            server.quiesce()
            metrics[kind].update(memory_metrics(children, server, settings))
            server.quiesce()
        lines = {kind: count_lines(server.log) for kind, server in servers.items()}
        churns = interleaved(kinds, lambda kind: churn_slice(kind, children, servers[kind], sliced))
        samples: dict[str, dict[str, list[float]]] = {}
        for kind, server in servers.items():
            churn, latencies = combined(churns[kind])
            metrics[kind].update(churn)
            samples[kind] = {"connect_ms": [value * 1000 for value in latencies]}
            server.quiesce()  # the log writer has written the churn's lines by now
            gained = count_lines(server.log) - lines[kind]
            metrics[kind]["log_lines_per_conn"] = gained / max(1, len(latencies))
        loads = interleaved(kinds, lambda kind: throughput_slice(children, servers[kind], sliced))
        for kind, server in servers.items():
            metrics[kind].update(throughput_combined(loads[kind]))
            server.quiesce()
        trips = interleaved(kinds, lambda kind: rtt_slice(children, servers[kind], sliced))
        for kind in kinds:
            rtts = [value for part in trips[kind] for value in part]
            metrics[kind]["rtt_p50_us"] = percentile(rtts, 50) * 1e6
            metrics[kind]["rtt_p99_us"] = percentile(rtts, 99) * 1e6
            samples[kind]["rtt_us"] = [value * 1e6 for value in rtts]
    finally:
        for server in servers.values():
            server.stop()
    return {kind: (metrics[kind], samples[kind]) for kind in kinds}


# --- several worker processes (--workers N) -------------------------------------------

WORKERS_KIND = "supervised_workers"
WORKERS_TARGET = 1.05  # server CPU per connection, N workers against one (issue #23)


def workers_ratios(per_round: dict[str, list[dict[str, float]]]) -> dict[str, dict[str, float]]:
    """N workers against one process: the ratio of the medians, and the median paired ratio."""
    one, many = per_round["supervised"], per_round[WORKERS_KIND]
    ratios: dict[str, float] = {}
    paired: dict[str, float] = {}
    for key, _, _ in METRICS:
        base = statistics.median(r[key] for r in one) if one and key in one[0] else None
        value = statistics.median(r[key] for r in many) if many and key in many[0] else None
        if base and value is not None:
            ratios[key] = value / base
        pairs = [
            m[key] / o[key] for o, m in zip(one, many, strict=False) if o.get(key) and key in m
        ]
        if pairs:
            paired[key] = statistics.median(pairs)
    return {"ratios_workers": ratios, "ratios_workers_paired": paired}


def workers_table(summary: dict[str, dict[str, float]], workers: int) -> str:
    rows = [("metric", "1 process", f"{workers} workers", "ratio w/1", "paired", "better")]
    for key, label, better in METRICS:
        one, many = summary["supervised"].get(key), summary[WORKERS_KIND].get(key)
        if one is None or many is None:
            continue
        ratios = (summary["ratios_workers"].get(key), summary["ratios_workers_paired"].get(key))
        shown = ["n/a" if ratio is None else f"{ratio:.2f}x" for ratio in ratios]
        rows.append((label, _fmt(one), _fmt(many), *shown, better))
    return _grid(rows)


def workers_verdict(summary: dict[str, dict[str, float]], workers: int) -> str:
    ratio = summary["ratios_workers"].get("cpu_ms_per_conn", math.nan)
    paired = summary["ratios_workers_paired"].get("cpu_ms_per_conn", math.nan)
    met = "met" if ratio <= WORKERS_TARGET else "NOT met"
    master = summary[WORKERS_KIND].get("master_cpu_ms_per_conn", math.nan)
    return (
        f"target: server CPU per connection with {workers} workers <= {WORKERS_TARGET}x one "
        f"process: {ratio:.2f}x (paired {paired:.2f}x) ({met}); the master's own share "
        f"{master:.2f} ms per connection"
    )


# --- the Redis-backed run (--redis) ---------------------------------------------------

REDIS_KIND = "supervised_redis"
MASTER_KIND = "supervised_master"  # the Sentinel set's master, by a plain URL
SENTINEL_KIND = "supervised_sentinel"  # the same master, through the sentinels
_BENCH_CLIENT = "ws-bench"
_SLOWLOG_MAX = 500_000
_CALLED = re.compile(r"redis\.call\('(\w+)'")


def start_redis(logdir: Path) -> RedisServer:
    """A redis-server of the bench's own on a free loopback port (it dies with the bench)."""
    launcher = [sys.executable, str(Path(__file__).resolve()), "--exec"]
    server = RedisServer(launcher=launcher).start()
    client = _redis_client(server)
    try:
        # every command enters the slow log (a few us each): EVALSHAs are told apart by script
        client.config_set("slowlog-log-slower-than", 0)
        client.config_set("slowlog-max-len", _SLOWLOG_MAX)
        (logdir / "redis.version").write_text(str(client.info("server")["redis_version"]))
    finally:
        client.close()
    return server


def _redis_client(server: RedisServer) -> Any:
    client = server.client()
    client.client_setname(_BENCH_CLIENT)
    return client


class RedisCalls:
    """What the daemon asked of Redis between :meth:`start` and :meth:`per_connection`."""

    def __init__(self, server: RedisServer) -> None:
        from supervisor.cluster import scripts as redis_scripts  # noqa: PLC0415  (the venv's)

        self.server = server
        texts = redis_scripts.BY_NAME
        self.scripts = {hashlib.sha1(t.encode()).hexdigest(): n for n, t in texts.items()}
        # the slow log lists the commands a script calls too: those are no round trips
        self.inner = {found.upper() for text in texts.values() for found in _CALLED.findall(text)}
        self.cpu = 0.0

    def start(self) -> None:
        client = _redis_client(self.server)
        try:
            client.slowlog_reset()
        finally:
            client.close()
        self.cpu = cpu_seconds(self.server.pid or 0)

    def per_connection(self, connections: int) -> dict[str, float]:
        """Commands per connection: each script, all of them, and redis-server CPU."""
        cpu = cpu_seconds(self.server.pid or 0) - self.cpu
        client = _redis_client(self.server)
        try:
            entries = client.slowlog_get(_SLOWLOG_MAX)
            client.slowlog_reset()
        finally:
            client.close()
        counts: Counter[str] = Counter()
        for entry in entries:
            if entry.get("client_name", b"") in (_BENCH_CLIENT, _BENCH_CLIENT.encode()):
                continue
            command = entry["command"]
            args = (
                command.decode(errors="replace") if isinstance(command, bytes) else command
            ).split()
            name = args[0].upper() if args else "?"
            if name == "EVALSHA" and len(args) > 1:
                name = self.scripts.get(args[1], "EVALSHA")
            if name not in self.inner:
                counts[name] += 1
        per = max(1, connections)
        return {
            "redis_acquire_per_conn": counts["ACQUIRE"] / per,
            "redis_release_per_conn": counts["RELEASE"] / per,
            "redis_requests_per_conn": sum(counts.values()) / per,
            "redis_cpu_ms_per_conn": cpu / per * 1000,
            "redis_log_full": float(len(entries) >= _SLOWLOG_MAX),
            **{f"redis_calls_{name.lower()}": float(n) for name, n in sorted(counts.items())},
        }


def redis_env(url: str, node_id: str = "") -> dict[str, str]:
    """The overrides of a supervised server on the Redis ledger at ``url``."""
    env = {"WS_SUPERVISOR_QUOTA_BACKEND": "redis", "WS_SUPERVISOR_REDIS_URL": url}
    return {**env, "WS_SUPERVISOR_SERVER_NODE_ID": node_id} if node_id else env


def start_redis_node(
    kind: str, children: Children, settings: Settings, logdir: Path, url: str, *, node_id: str = ""
) -> Server:
    """A supervised server on the Redis ledger at ``url`` (started; not waited for)."""
    return start_server(
        kind,
        children,
        settings.compression,
        logdir,
        overrides=redis_env(url, node_id),
        log_level=settings.log_level,
    )


def bench_redis(
    children: Children, settings: Settings, logdir: Path, redis_server: RedisServer
) -> tuple[dict[str, float], dict[str, list[float]]]:
    """ws-supervisor with the Redis ledger, churn only: (metrics, latency samples)."""
    server = start_redis_node(REDIS_KIND, children, settings, logdir, redis_server.url)
    calls = RedisCalls(redis_server)
    try:
        server.wait_ready()
        run_scenario(
            children, server, settings, "churn", concurrency=10, duration=settings.warmup_seconds
        )
        server.quiesce()
        calls.start()
        metrics, latencies = churn_metrics(children, server, settings)
        metrics.update(calls.per_connection(int(metrics["churn_conns"])))
    finally:
        server.stop()
    return metrics, {"connect_ms": [value * 1000 for value in latencies]}


# the rows of METRICS that the Redis table compares, and the Redis run's own rows
REDIS_COMPARED = (
    "conns_per_s",
    "connect_p50_ms",
    "connect_p99_ms",
    "cpu_ms_per_conn",
    "churn_errors",
)
REDIS_ONLY: list[tuple[str, str]] = [
    ("redis_acquire_per_conn", "redis: ACQUIRE calls per admission (round trips)"),
    ("redis_release_per_conn", "redis: RELEASE calls per connection"),
    ("redis_requests_per_conn", "redis: every daemon request per connection"),
    ("redis_cpu_ms_per_conn", "redis: redis-server CPU per connection (ms)"),
]


def sentinel_pair(
    children: Children, settings: Settings, logdir: Path, sentinels: SentinelSet
) -> dict[str, tuple[dict[str, float], list[float]]]:
    """The Sentinel set's master by a plain URL and through the sentinels, churned in slices.

    Two nodes, both running throughout, each on its own URL; the round's
    ``churn_seconds`` of churn per node goes in :data:`SLICES` slices,
    alternating ABBA. Returns each kind's combined (metrics, latencies).
    """
    urls = {
        MASTER_KIND: f"redis://{HOST}:{sentinels.named_master()}/0",
        SENTINEL_KIND: sentinels.url,
    }
    servers: dict[str, Server] = {}
    sliced = replace(settings, churn_seconds=settings.churn_seconds / SLICES)
    parts: dict[str, list[tuple[dict[str, float], list[float]]]] = {}
    try:
        for kind, url in urls.items():
            servers[kind] = start_redis_node(kind, children, settings, logdir, url)
        for server in servers.values():
            server.wait_ready()
            run_scenario(
                children,
                server,
                settings,
                "churn",
                concurrency=10,
                duration=settings.warmup_seconds,
            )
            server.quiesce()
        parts = interleaved(list(urls), lambda kind: churn_metrics(children, servers[kind], sliced))
    finally:
        for server in servers.values():
            server.stop()
    return {kind: combined(found) for kind, found in parts.items()}


def combined(
    parts: list[tuple[dict[str, float], list[float]]],
) -> tuple[dict[str, float], list[float]]:
    """Slices of one node's churn as one run: its connections over its time, its CPU over them."""
    conns = sum(metrics["churn_conns"] for metrics, _ in parts)
    elapsed = sum(
        metrics["churn_conns"] / metrics["conns_per_s"]
        for metrics, _ in parts
        if metrics["conns_per_s"]
    )
    latencies = [value for _, found in parts for value in found]
    per_conn = [
        key
        for key in ("cpu_ms_per_conn", "switches_per_conn", "master_cpu_ms_per_conn")
        if all(key in found for found, _ in parts)
    ]
    metrics = {
        key: sum(found[key] * found["churn_conns"] for found, _ in parts) / max(1, conns)
        for key in per_conn
    }
    metrics.update(
        conns_per_s=conns / elapsed if elapsed else 0.0,
        connect_p50_ms=percentile(latencies, 50) * 1000,
        connect_p99_ms=percentile(latencies, 99) * 1000,
        churn_errors=sum(found["churn_errors"] for found, _ in parts),
        churn_conns=conns,
    )
    return metrics, latencies


def redis_round(
    children: Children,
    settings: Settings,
    logdir: Path,
    redis_server: RedisServer,
    *,
    per_round: dict[str, list[dict[str, float]]],
    samples: dict[str, dict[str, list[float]]],
    sentinels: SentinelSet | None = None,
) -> None:
    """One round of the Redis-backed runs, after the others.

    A lone redis-server; then, with ``sentinels``, its master by a plain URL
    and through the sentinels, side by side (:func:`sentinel_pair`).
    """
    number = len(per_round[REDIS_KIND])
    print(f"== round {number + 1}: {REDIS_KIND} (churn)", file=sys.stderr)
    found = {REDIS_KIND: bench_redis(children, settings, logdir, redis_server)}
    if sentinels is not None:
        print(f"== round {number + 1}: {MASTER_KIND} and {SENTINEL_KIND}", file=sys.stderr)
        for kind, (metrics, latencies) in sentinel_pair(
            children, settings, logdir, sentinels
        ).items():
            found[kind] = (metrics, {"connect_ms": [value * 1000 for value in latencies]})
    for kind, (metrics, values) in found.items():
        per_round[kind].append(metrics)
        for key, kept in values.items():
            samples[kind].setdefault(key, []).extend(kept)
        print(
            f"   {kind}: " + ", ".join(f"{k}={_fmt(v)}" for k, v in metrics.items()),
            file=sys.stderr,
        )


def cluster_extras(
    children: Children,
    settings: Settings,
    logdir: Path,
    redis_server: RedisServer,
    sentinels: SentinelSet,
) -> dict[str, float]:
    """After the rounds: pushes across two nodes, and the cost of WAIT on the Sentinel master."""
    from supervisor.cluster import scripts  # noqa: PLC0415  (the venv has the project)

    def start_node(node_id: str) -> Server:
        server = start_redis_node(
            node_id, children, settings, logdir, redis_server.url, node_id=node_id
        )
        server.wait_ready()
        return server

    samples = 100 if settings.rounds == 1 else 500
    print(f"== pushes: local and cross-node, {samples} each", file=sys.stderr)
    found = push_latency(start_node, redis_server.port, samples)
    print(f"== WAIT 1 after each admission, {samples * 4} pairs", file=sys.stderr)
    found.update(wait_cost(sentinels.named_master(), scripts.ACQUIRE, scripts.RELEASE, samples * 4))
    return found


def print_redis(summary: dict[str, dict[str, float]]) -> None:
    redis_run = summary[REDIS_KIND]
    print()
    print(
        "ws-supervisor with the Redis ledger (churn), median; a redis-server on loopback; "
        f"{redis_run.get('churn_conns', 0):,.0f} connections in the median round"
    )
    print(redis_table(summary))
    print("memory = ws-supervisor with the in-memory ledger (the table above).")
    print(redis_verdict(summary))
    if summary.get(SENTINEL_KIND):
        print()
        print(
            "the same churn on a master with a replica and three sentinels: "
            "the master's URL, or the sentinels'"
        )
        print(sentinel_table(summary))
    if summary.get("cluster"):
        print()
        print(cluster_table(summary["cluster"]))
    print(cluster_verdict(summary))


def redis_ratios(
    summary: dict[str, dict[str, float]], per_round: dict[str, list[dict[str, float]]]
) -> dict[str, dict[str, float]]:
    """redis/bare and redis/memory ratios of the churn metrics; sentinel/master URL, paired."""
    found: dict[str, dict[str, float]] = {"ratios_redis_bare": {}, "ratios_redis_memory": {}}
    redis_run = summary.get(REDIS_KIND, {})
    for key in REDIS_COMPARED:
        for name, base in (("ratios_redis_bare", "bare"), ("ratios_redis_memory", "supervised")):
            value, reference = redis_run.get(key), summary[base].get(key)
            if reference and value is not None:
                found[name][key] = value / reference
    found["ratios_sentinel_redis_paired"] = {}
    for key in REDIS_COMPARED:
        pairs = [
            s[key] / r[key]
            for r, s in zip(
                per_round.get(MASTER_KIND, []), per_round.get(SENTINEL_KIND, []), strict=False
            )
            if r.get(key) and key in s
        ]
        if pairs:
            found["ratios_sentinel_redis_paired"][key] = statistics.median(pairs)
    return found


def sentinel_table(summary: dict[str, dict[str, float]]) -> str:
    rows: list[tuple[str, ...]] = [("metric", "master URL", "sentinel", "paired s/m", "better")]
    for key, label, better in (row for row in METRICS if row[0] in REDIS_COMPARED):
        paired = summary["ratios_sentinel_redis_paired"].get(key)
        rows.append(
            (
                label,
                _fmt(summary[MASTER_KIND].get(key, math.nan)),
                _fmt(summary[SENTINEL_KIND].get(key, math.nan)),
                "n/a" if paired is None else f"{paired:.2f}x",
                better,
            )
        )
    return _grid(rows)


def cluster_table(cluster: dict[str, float]) -> str:
    """Pushes' latencies (ms) and WAIT's cost, from :func:`cluster_extras`."""
    rows: list[tuple[str, ...]] = [("ms", "p50", "p99")]
    for key, label in (
        ("push_local_frame", "local push: request -> frame at the client"),
        ("push_cross_frame", "cross-node push: request -> frame at the client"),
        ("push_local_answer", "local push: request -> answer"),
        ("push_cross_answer", "cross-node push: request -> answer (the other node confirmed)"),
        ("redis_ping", "Redis PING round trip (reference)"),
        ("wait_plain", "one admission (ACQUIRE) per round trip"),
        ("wait_waited", "the same, with WAIT 1 100 in its pipeline"),
    ):
        p50, p99 = cluster.get(f"{key}_p50_ms", math.nan), cluster.get(f"{key}_p99_ms", math.nan)
        rows.append((label, f"{p50:.3f}", f"{p99:.3f}"))
    return _grid(rows)


def cluster_verdict(summary: dict[str, dict[str, float]]) -> str:
    """The targets of issue #25, met or not."""
    paired = summary.get("ratios_sentinel_redis_paired", {}).get("conns_per_s", math.nan)
    lines = [
        f"target: churn through Sentinel >= 0.95x the master's plain URL (paired): {paired:.2f}x "
        f"({'met' if paired >= 0.95 else 'NOT met'})",
    ]
    cluster = summary.get("cluster", {})
    if cluster:
        ping = cluster["redis_ping_p50_ms"]
        for pct in ("p50", "p99"):
            added = cluster[f"push_cross_frame_{pct}_ms"] - cluster[f"push_local_frame_{pct}_ms"]
            bound = cluster[f"redis_ping_{pct}_ms"]
            lines.append(
                f"target: a cross-node push adds <= one Redis round trip ({pct}): "
                f"{added:+.3f} ms to the frame, one round trip {bound:.3f} ms "
                f"({'met' if added <= bound else 'NOT met'})"
            )
        lines.append(
            f"WAIT 1 100 adds {cluster['wait_added_p50_ms']:.3f} ms (paired p50) to an admission"
            f" (Redis PING {ping:.3f} ms); not replicated in time: "
            f"{cluster['wait_unreplicated']:.0f}"
        )
    return "\n".join(lines)


def redis_table(summary: dict[str, dict[str, float]]) -> str:
    def ratio(name: str, key: str) -> str:
        value = summary[name].get(key)
        return "n/a" if value is None else f"{value:.2f}x"

    header = ("metric", "bare", "memory", "redis", "redis/bare", "redis/memory", "better")
    rows: list[tuple[str, ...]] = [header]
    for key, label, better in (row for row in METRICS if row[0] in REDIS_COMPARED):
        cells = [_fmt(summary[kind].get(key, math.nan)) for kind in ("bare", "supervised")]
        cells.append(_fmt(summary[REDIS_KIND].get(key, math.nan)))
        ratios = (ratio("ratios_redis_bare", key), ratio("ratios_redis_memory", key))
        rows.append((label, *cells, *ratios, better))
    for key, label in REDIS_ONLY:
        rows.append((label, "", "", _fmt(summary[REDIS_KIND].get(key, math.nan)), "", "", "lower"))
    return _grid(rows)


def redis_verdict(summary: dict[str, dict[str, float]]) -> str:
    """The targets of issue #6, met or not."""
    trips = summary[REDIS_KIND].get("redis_acquire_per_conn", math.nan)
    churn = summary["ratios_redis_bare"].get("conns_per_s", math.nan)
    lines = [
        f"target: admission <= 1 Redis round trip per connection: {trips:.2f} "
        f"({'met' if trips <= 1.0 else 'NOT met'})",
        f"target: churn >= 0.7x bare websockets: {churn:.2f}x "
        f"({'met' if churn >= 0.7 else 'NOT met'})",
    ]
    if summary[REDIS_KIND].get("redis_log_full"):
        lines.append("warning: the Redis slow log overflowed; the command counts are low")
    return "\n".join(lines)


def _grid(rows: Sequence[Sequence[str]]) -> str:
    """A markdown table of ``rows`` (the first is the header)."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for index, row in enumerate(rows):
        cells = [row[0].ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)
        ]
        lines.append("| " + " | ".join(cells) + " |")
        if index == 0:
            lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


# (key, label, the better direction); the table's rows, in order
METRICS: list[tuple[str, str, str]] = [
    ("conns_per_s", "churn: connections/s", "higher"),
    ("connect_p50_ms", "churn: connect->welcome p50 (ms)", "lower"),
    ("connect_p99_ms", "churn: connect->welcome p99 (ms)", "lower"),
    ("cpu_ms_per_conn", "churn: server CPU per connection (ms)", "lower"),
    ("switches_per_conn", "churn: server context switches per connection", "lower"),
    ("log_lines_per_conn", "churn: server log lines per connection", "lower"),
    ("msgs_per_s", "throughput: echo round trips/s", "higher"),
    ("cpu_us_per_msg", "throughput: server CPU per message (us)", "lower"),
    ("switches_per_msg", "throughput: server context switches per message", "lower"),
    ("rtt_p50_us", "idle: echo round trip p50 (us)", "lower"),
    ("rtt_p99_us", "idle: echo round trip p99 (us)", "lower"),
    ("rss_kib_per_conn", "memory: server RSS per idle connection (KiB)", "lower"),
    ("threads_with_idle_conns", "memory: server threads with the idle connections", "lower"),
    ("rss_idle_mib", "memory: server RSS at start (MiB)", "lower"),
    ("churn_errors", "churn: client errors", "lower"),
    ("throughput_errors", "throughput: client errors", "lower"),
]


def _fmt(value: float) -> str:
    if math.isnan(value):
        return "n/a"
    if value == int(value):
        return f"{value:,.0f}"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def summarize(per_round: dict[str, list[dict[str, float]]]) -> dict[str, dict[str, float]]:
    """Medians over rounds, and supervised/bare ratios two ways.

    ``ratios``: the supervised median over the bare median. ``ratios_paired``:
    the median of each round's own ratio, the servers of a round having run
    side by side; when the host's speed drifts between rounds, the two
    medians can come from rounds far apart, and the paired ratio cancels it.
    """
    medians: dict[str, dict[str, float]] = {}
    for kind, rounds in per_round.items():
        medians[kind] = {
            key: statistics.median(r[key] for r in rounds) for key in rounds[0] if rounds
        }
    ratios: dict[str, float] = {}
    paired: dict[str, float] = {}
    for key, _, _ in METRICS:
        bare, supervised = medians["bare"].get(key), medians["supervised"].get(key)
        if bare and supervised is not None:
            ratios[key] = supervised / bare
        pairs = [
            s[key] / b[key]
            for b, s in zip(per_round["bare"], per_round["supervised"], strict=False)
            if b.get(key) and key in s
        ]
        if pairs:
            paired[key] = statistics.median(pairs)
    return {**medians, "ratios": ratios, "ratios_paired": paired}


def table(summary: dict[str, dict[str, float]]) -> str:
    rows = [("metric", "bare", "supervised", "ratio s/b", "paired", "better")]
    for key, label, better in METRICS:
        bare, sup = summary["bare"].get(key), summary["supervised"].get(key)
        if bare is None or sup is None:
            continue
        ratios = (summary["ratios"].get(key), summary.get("ratios_paired", {}).get(key))
        shown = ["n/a" if ratio is None else f"{ratio:.2f}x" for ratio in ratios]
        rows.append((label, _fmt(bare), _fmt(sup), *shown, better))
    return _grid(rows)


def matplotlib_available() -> bool:
    try:
        import matplotlib  # type: ignore[import-not-found, unused-ignore]  # noqa: F401, PLC0415
    except ImportError:
        return False
    return True


def plot(path: Path, samples: dict[str, dict[str, list[float]]]) -> None:
    """CDFs of connect latency and idle round trip, bare vs supervised."""
    import matplotlib  # type: ignore[import-not-found, unused-ignore]  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # type: ignore[import-not-found, unused-ignore]  # noqa: PLC0415

    figure, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    panels = [("connect_ms", "churn: connect -> welcome (ms)"), ("rtt_us", "idle echo RTT (us)")]
    for axis, (key, title) in zip(axes, panels, strict=True):
        for kind in ("bare", "supervised"):
            values = sorted(samples[kind].get(key, []))
            if values:
                fractions = [(i + 1) / len(values) for i in range(len(values))]
                axis.plot(values, fractions, label=kind)
        axis.set_xscale("log")
        axis.set_title(title)
        axis.set_ylabel("fraction <= x")
        axis.grid(True, which="both", alpha=0.3)
        axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def websockets_version() -> str:
    try:
        return importlib.metadata.version("websockets")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover
        return "not installed"


def print_tables(
    summary: dict[str, dict[str, float]],
    settings: Settings,
    args: argparse.Namespace,
    took: float,
) -> None:
    """The run's tables and verdicts, on stdout."""
    print()
    print(
        f"ws-supervisor vs bare websockets, {settings.rounds} round(s), median; "
        f"compression={settings.compression}, {os.cpu_count()} CPUs, "
        f"{settings.client_procs} client process(es), took {took:.0f}s"
        + (f"; app {settings.app}" if settings.app else "")
        + f"; supervised log level {settings.log_level}"
    )
    print(table(summary))
    print(
        "ratio = supervised / bare, of the medians; paired = the median of each round's ratio; "
        "'better' says which direction is the good one."
    )
    if args.redis:
        print_redis(summary)
    if settings.workers > 1:
        print()
        print(f"ws-supervisor serve --workers {settings.workers} against one process, median")
        print(workers_table(summary, settings.workers))
        print(workers_verdict(summary, settings.workers))


@dataclass
class RedisTargets:
    """The Redis of ``--redis``: a plain redis-server and a Sentinel set, both the bench's own."""

    server: RedisServer
    sentinels: SentinelSet

    @classmethod
    def start(cls, logdir: Path) -> RedisTargets:
        server = start_redis(logdir)
        try:
            launcher = [sys.executable, str(Path(__file__).resolve()), "--exec"]
            return cls(server, SentinelSet(launcher=launcher, fast=False).start())
        except BaseException:
            server.stop()
            raise

    def stop(self) -> None:
        self.server.stop()
        self.sentinels.cleanup()


def run_rounds(
    children: Children,
    settings: Settings,
    logdir: Path,
    targets: RedisTargets | None,
    *,
    kinds: tuple[str, ...],
    per_round: dict[str, list[dict[str, float]]],
    samples: dict[str, dict[str, list[float]]],
) -> None:
    """Every round: bare and supervised side by side (:func:`bench_round`), then the Redis runs."""
    for number in range(settings.rounds):
        order = kinds if number % 2 == 0 else kinds[::-1]
        print(f"== round {number + 1}/{settings.rounds}: {', '.join(order)}", file=sys.stderr)
        for kind, (metrics, found) in bench_round(order, children, settings, logdir).items():
            per_round[kind].append(metrics)
            for key, values in found.items():
                samples[kind].setdefault(key, []).extend(values)
            shown = ", ".join(f"{k}={_fmt(v)}" for k, v in metrics.items())
            print(f"   {kind}: {shown}", file=sys.stderr)
        if targets is not None:
            redis_round(
                children,
                settings,
                logdir,
                targets.server,
                per_round=per_round,
                samples=samples,
                sentinels=targets.sentinels,
            )


def orchestrate(args: argparse.Namespace) -> int:
    if args.plot and not matplotlib_available():
        print(
            "bench: --plot needs matplotlib, which is not installed in this environment "
            "(scripts/bench installs it with the dev extras: pip install -e '.[dev]')",
            file=sys.stderr,
        )
        return EXIT_NO_MATPLOTLIB
    settings = Settings(
        rounds=1 if args.quick else args.rounds,
        churn_seconds=args.duration or (3.0 if args.quick else 10.0),
        throughput_seconds=args.duration or (3.0 if args.quick else 10.0),
        rtt_samples=150 if args.quick else 2000,  # p99: the 20th-worst, not one stall
        idle_connections=args.connections or (300 if args.quick else 1000),
        warmup_seconds=0.5 if args.quick else 1.0,
        client_procs=args.client_procs or max(1, min(4, (os.cpu_count() or 2) // 2)),
        compression=args.compression,
        app=args.app,
        log_level=args.log_level,
        workers=args.workers,
    )
    children = Children()

    def on_term(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    kinds = ("bare", "supervised") + ((WORKERS_KIND,) if settings.workers > 1 else ())
    per_round: dict[str, list[dict[str, float]]] = {kind: [] for kind in kinds}
    samples: dict[str, dict[str, list[float]]] = {kind: {} for kind in kinds}
    started = time.monotonic()
    targets: RedisTargets | None = None
    cluster: dict[str, float] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="ws-bench-") as logdir:
            if args.redis:
                targets = RedisTargets.start(Path(logdir))
                for kind in (REDIS_KIND, MASTER_KIND, SENTINEL_KIND):
                    per_round[kind], samples[kind] = [], {}
            run_rounds(
                children,
                settings,
                Path(logdir),
                targets,
                kinds=kinds,
                per_round=per_round,
                samples=samples,
            )
            if targets is not None:
                cluster = cluster_extras(
                    children, settings, Path(logdir), targets.server, targets.sentinels
                )
    except KeyboardInterrupt:
        print("bench: interrupted", file=sys.stderr)
        return 130
    finally:
        children.stop_all()
        if targets is not None:
            targets.stop()
    summary = summarize(per_round)
    if args.redis:
        summary.update(redis_ratios(summary, per_round))
        summary["cluster"] = cluster
    summary.update(workers_ratios(per_round) if settings.workers > 1 else {})
    print_tables(summary, settings, args, time.monotonic() - started)
    if args.json:
        meta = {
            "cpu_count": os.cpu_count(),
            "python": platform.python_version(),
            "websockets": websockets_version(),
            "platform": platform.platform(),
            "rounds": settings.rounds,
            "durations": {
                "churn_seconds": settings.churn_seconds,
                "throughput_seconds": settings.throughput_seconds,
                "rtt_samples": settings.rtt_samples,
                "idle_connections": settings.idle_connections,
                "warmup_seconds": settings.warmup_seconds,
            },
            "client_procs": settings.client_procs,
            "compression": settings.compression,
            "app": settings.app or "supervisor.front.apps:EchoApp",
            "log_level": settings.log_level,
            "command": shlex.join(sys.argv),
            "seconds": round(time.monotonic() - started, 1),
            "redis": args.redis,
            "workers": settings.workers,
        }
        document = {**summary, "meta": meta, "rounds": per_round}
        Path(args.json).write_text(json.dumps(document, indent=2) + "\n")
    if args.plot:
        plot(Path(args.plot), samples)
        print(f"latency CDFs written to {args.plot}")
    return 0


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="scripts/bench", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "--rounds", type=int, default=3, help="rounds, servers side by side (default 3)"
    )
    parser.add_argument("--quick", action="store_true", help="1 round, short runs (< 60 s)")
    parser.add_argument("--duration", type=float, default=0.0, help="seconds per timed scenario")
    parser.add_argument("--connections", type=int, default=0, help="idle connections (memory)")
    parser.add_argument("--compression", choices=("deflate", "none"), default="deflate")
    parser.add_argument(
        "--app",
        default="",
        help="the supervised server's app (default its EchoApp, which runs inline; "
        "supervisor.front.apps:WorkerEchoApp is the same echo on the manager workers)",
    )
    parser.add_argument(
        "--log-level",
        default=SHIPPED_LOG_LEVEL,
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
        help=f"the supervised server's [logging] level (default {SHIPPED_LOG_LEVEL}, "
        "the level every profile ships)",
    )
    parser.add_argument("--client-procs", type=int, default=0, help="load generator processes")
    parser.add_argument("--json", metavar="FILE", help="write the results as JSON")
    parser.add_argument("--plot", metavar="FILE.png", help="latency CDFs (needs matplotlib)")
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="also run ws-supervisor serve --workers N each round, against one process",
    )
    parser.add_argument(
        "--redis",
        action="store_true",
        help="also churn against ws-supervisor with the Redis ledger (a redis-server of its own)",
    )
    internal = parser.add_argument_group("internal modes")
    internal.add_argument("--serve-bare", action="store_true", help=argparse.SUPPRESS)
    internal.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    internal.add_argument("--max-seconds", type=float, default=3600.0, help=argparse.SUPPRESS)
    internal.add_argument("--ping-interval", type=float, default=0.0, help=argparse.SUPPRESS)
    internal.add_argument(
        "--client", choices=("churn", "throughput", "rtt", "memory"), help=argparse.SUPPRESS
    )
    internal.add_argument("--url", default="", help=argparse.SUPPRESS)
    internal.add_argument("--concurrency", type=int, default=1, help=argparse.SUPPRESS)
    internal.add_argument("--samples", type=int, default=500, help=argparse.SUPPRESS)
    internal.add_argument("--tag", default="bench", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be >= 1")
    return args


def _run_bounded(coroutine: Any, seconds: float) -> None:
    async def bounded() -> None:
        await asyncio.wait_for(coroutine, seconds)

    asyncio.run(bounded())


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["--exec"]:
        exec_child(arguments[1:])
    args = parse_args(arguments)
    if args.serve_bare:
        asyncio.run(bare_server(args.port, args.compression, args.max_seconds, args.ping_interval))
        return 0
    if args.client:
        spec = ClientArgs(
            scenario=args.client,
            url=args.url,
            compression=args.compression,
            concurrency=args.concurrency,
            duration=args.duration,
            samples=args.samples,
            connections=args.connections,
            tag=args.tag,
        )
        hard = args.duration + args.samples * 0.1 + args.connections * 0.1 + 300
        _run_bounded(client_main(spec), hard)
        return 0
    return orchestrate(args)


if __name__ == "__main__":
    sys.exit(main())
