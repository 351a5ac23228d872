#!/usr/bin/env python3
"""Load-test a running ws-supervisor (or one it starts with --spawn) and check it leaks nothing.

Clients run in several separate processes (``--procs``); each process owns a
share of the users, opens and closes connections at the churn rate, exchanges
echo and ping frames on each, and sometimes resumes a thread (which may
supersede an open connection). During the run some client processes are
killed (SIGKILL) or frozen (SIGSTOP; killed at the end): those are real
process deaths, and a replacement process takes over their users.

Meanwhile ``/debug/state`` and ``/metrics`` are sampled every 0.2 s. After the
last client is gone and a grace period (keepalive deadline + 2 s), every slot
must be free, ``ws_supervisor_managers_active`` must be 0, and the daemon's
threads must come back to within 10 of their number at the start.

Exit status: 0 no problem; 1 a leak, a quota breach or a mismatch; 2 bad
usage; 3 the daemon could not be reached (or, with --spawn, did not start).

Usage: scripts/loadtest --spawn --users 4 --per-user 5 --churn 20 --kill-pct 10 --freeze-pct 5
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import random
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import urlsplit

from _toolkit import (  # scripts/ is on sys.path when run as a script
    HOST,
    ROOT,
    exec_child,
    free_port,
    http_get,
    percentile,
    raise_fd_limit,
    stop_process,
    supervisor_command,
    tail_file,
)
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException

from supervisor.admin.dump import every_user

LOOPBACK = {"127.0.0.1", "::1", "localhost"}
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_UNREACHABLE = 0, 1, 2, 3
SAMPLE_EVERY = 0.2
RECENT_CLOSE = 1.0  # a slot closed this recently may not be free yet: a 429 then is expected
THREAD_ALLOWANCE = 10
FD_SETTLE = 5.0  # seconds for open files to come back after the other checks

# --- small helpers --------------------------------------------------------------------


def ci_profile() -> dict[str, Any]:
    """config/ci.toml as data ({} if it cannot be read)."""
    try:
        with (ROOT / "config" / "ci.toml").open("rb") as file:
            return tomllib.load(file)
    except (OSError, tomllib.TOMLDecodeError):
        return {}


def parse_metrics(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Prometheus text format: {(name, labels): value}."""
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        head, _, value = line.rpartition(" ")
        name, _, rest = head.partition("{")
        labels: set[tuple[str, str]] = set()
        for part in rest.rstrip("}").split(","):
            key, sep, raw = part.partition("=")
            if sep:
                labels.add((key.strip(), raw.strip().strip('"')))
        with contextlib.suppress(ValueError):
            samples[(name, frozenset(labels))] = float(value)
    return samples


Metrics = dict[tuple[str, frozenset[tuple[str, str]]], float]


def metric(samples: Metrics, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def labelled(samples: Metrics, name: str, label: str) -> dict[str, float]:
    """Every sample of ``name`` by the value of ``label``."""
    return {
        dict(labels)[label]: value
        for (found, labels), value in samples.items()
        if found == name and label in dict(labels)
    }


def histogram_quantile(q: float, buckets: dict[float, float]) -> float:
    """Prometheus-style quantile from cumulative buckets {upper bound: count}; NaN if empty."""
    bounds = sorted(buckets)
    if not bounds or buckets[bounds[-1]] <= 0:
        return float("nan")
    rank = q * buckets[bounds[-1]]
    lower, below = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if math.isinf(bound):
                return lower  # beyond the last finite bucket: its bound is all we know
            if count == below:
                return bound
            return lower + (bound - lower) * (rank - below) / (count - below)
        lower, below = bound, count
    return lower


def release_buckets(samples: Metrics) -> dict[float, float]:
    found = labelled(samples, "ws_supervisor_release_latency_seconds_bucket", "le")
    return {float(le): value for le, value in found.items()}


# --- one client process ----------------------------------------------------------------


@dataclass
class UserState:
    """What one client process knows about one of its users."""

    open: int = 0
    pending: int = 0
    closes: deque[float] = field(default_factory=lambda: deque(maxlen=64))
    threads: deque[str] = field(default_factory=lambda: deque(maxlen=8))

    def held(self) -> int:
        """Slots this user may hold now, by this process's count (open, opening, just closed)."""
        now = time.monotonic()
        recent = sum(1 for closed in self.closes if now - closed < RECENT_CLOSE)
        return self.open + self.pending + recent


@dataclass
class ClientSpec:
    url: str
    users: list[str]
    per_user: int
    rate: float
    lifetime: float
    grace_until: float  # wall clock: a 429 before it is expected (a predecessor's slots)
    mean_life: float
    resume_pct: float
    seed: int


class ClientLoad:
    """The connections of one client process."""

    def __init__(self, spec: ClientSpec) -> None:
        self.spec = spec
        self.rng = random.Random(spec.seed)
        self.users = {user: UserState() for user in spec.users}
        self.counts: Counter[str] = Counter()
        self.codes: Counter[str] = Counter()
        self.latencies: list[float] = []
        self.stop = asyncio.Event()

    def emit(self) -> None:
        """One ``stats`` line: counts and latencies since the last one."""
        line = {"c": dict(self.counts), "codes": dict(self.codes), "lat": self.latencies}
        print("stats " + json.dumps(line), flush=True)
        self.counts, self.codes, self.latencies = Counter(), Counter(), []

    async def run(self) -> None:
        deadline = time.monotonic() + self.spec.lifetime
        cap = max(8, self.spec.per_user * len(self.users) * 3)
        tasks: set[asyncio.Task[None]] = set()
        emitter = asyncio.create_task(self._emit_every(0.5))
        while (now := time.monotonic()) < deadline - 0.3:
            if len(tasks) < cap:
                life = min(self.rng.uniform(0.2, 2 * self.spec.mean_life), deadline - now - 0.2)
                task = asyncio.create_task(self.connection(self.rng.choice(self.spec.users), life))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            gap = min(5.0, self.rng.expovariate(self.spec.rate))
            await asyncio.sleep(max(0.0, min(gap, deadline - time.monotonic())))
        self.stop.set()
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=8)
            for task in late:
                task.cancel()
        emitter.cancel()
        self.emit()

    async def _emit_every(self, period: float) -> None:
        while True:
            await asyncio.sleep(period)
            self.emit()

    async def connection(self, user: str, life: float) -> None:
        state = self.users[user]
        thread = None
        if state.threads and self.rng.random() * 100 < self.spec.resume_pct:
            thread = self.rng.choice(list(state.threads))
        url = f"{self.spec.url}?user_id={user}" + (f"&thread_id={thread}" if thread else "")
        state.pending += 1
        started = time.perf_counter()
        try:
            ws = await connect(url, ping_interval=None, open_timeout=10, close_timeout=3)
        except InvalidStatus as error:
            state.pending -= 1
            status = error.response.status_code
            if status == 429:
                expected = state.held() >= self.spec.per_user or time.time() < self.spec.grace_until
                self.counts["rejected_at_quota" if expected else "rejected_below_quota"] += 1
            else:
                self.counts[f"error_http_{status}"] += 1
            return
        except (OSError, TimeoutError, WebSocketException) as error:
            state.pending -= 1
            self.counts[f"error_{type(error).__name__}"] += 1
            return
        state.pending -= 1
        state.open += 1
        try:
            await self._serve(ws, user, thread, started, life)
        finally:
            state.open -= 1
            state.closes.append(time.monotonic())
            with contextlib.suppress(OSError, WebSocketException):
                await ws.close()

    async def _serve(
        self, ws: ClientConnection, user: str, thread: str | None, started: float, life: float
    ) -> None:
        try:
            welcome = json.loads(await asyncio.wait_for(ws.recv(), 10))
            self.latencies.append(time.perf_counter() - started)
            self.counts["admitted"] += 1
            wrong_user = welcome.get("type") != "welcome" or welcome.get("user_id") != user
            if wrong_user or (thread is not None and welcome.get("thread_id") != thread):
                self.counts["welcome_mismatch"] += 1
            if isinstance(welcome.get("thread_id"), str):
                self.users[user].threads.append(welcome["thread_id"])
            end = time.monotonic() + life
            sequence = 0
            while time.monotonic() < end and not self.stop.is_set():
                sequence += 1
                if sequence % 5 == 0:
                    await ws.send('{"type": "ping"}')
                    expected: dict[str, Any] = {"type": "pong"}
                else:
                    data = f"{user}:{sequence}"
                    await ws.send(json.dumps({"type": "echo", "data": data}))
                    expected = {"type": "echo", "data": data}
                reply = json.loads(await asyncio.wait_for(ws.recv(), 10))
                self.counts["frames"] += 1
                if reply != expected:
                    self.counts["echo_mismatch"] += 1
                pause = min(self.rng.uniform(0.1, 0.5), end - time.monotonic())
                if pause > 0:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self.stop.wait(), pause)
        except ConnectionClosed as closed:
            self.codes[str(closed.rcvd.code if closed.rcvd else 1006)] += 1
        except (OSError, TimeoutError, WebSocketException, ValueError) as error:
            self.counts[f"error_{type(error).__name__}"] += 1


async def client_process(spec: ClientSpec) -> None:
    raise_fd_limit()
    load = ClientLoad(spec)
    await asyncio.wait_for(load.run(), spec.lifetime + 30)


# --- the parent -------------------------------------------------------------------------


@dataclass
class Options:
    """The command line, checked."""

    url: str
    admin: str
    users: int
    per_user: int
    churn: float
    kill_pct: float
    freeze_pct: float
    procs: int
    duration: float
    pid: int | None
    spawn: bool
    json: str | None
    seed: int
    keepalive: float
    settle: float
    resume_pct: float


class Daemon:
    """``ws-supervisor serve --profile ci`` started by this tool (--spawn)."""

    def __init__(self, per_user: int, logdir: Path) -> None:
        self.port, self.admin_port = free_port(), free_port()
        self.log = logdir / "daemon.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("WS_SUPERVISOR_")}
        env.update(
            {
                "WS_SUPERVISOR_SERVER_HOST": HOST,
                "WS_SUPERVISOR_SERVER_PORT": str(self.port),
                "WS_SUPERVISOR_ADMIN_PORT": str(self.admin_port),
                "WS_SUPERVISOR_QUOTA_MAX_MANAGERS_PER_USER": str(per_user),
                "WS_SUPERVISOR_QUOTA_NODE_MAX_MANAGERS": "20000",
                "WS_SUPERVISOR_THRESHOLDS_EMERGENCY_ACTION": "none",
                "WS_SUPERVISOR_LOGGING_LEVEL": "WARNING",
            }
        )
        argv = [*supervisor_command(), "serve", "--profile", "ci"]
        wrapped = [sys.executable, str(Path(__file__).resolve()), "--exec", *argv]
        with self.log.open("w") as out:
            self.proc = subprocess.Popen(
                wrapped,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=str(ROOT),
                start_new_session=True,
            )
        self.exit_code: int | None = None

    @property
    def url(self) -> str:
        return f"ws://{HOST}:{self.port}/ws"

    @property
    def admin(self) -> str:
        return f"http://{HOST}:{self.admin_port}"

    def wait_ready(self, timeout: float = 30.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.proc.poll() is None:
            with contextlib.suppress(OSError):
                if http_get(self.admin + "/healthz", 1.0)[0] == 200:
                    return True
            time.sleep(0.05)
        return False

    def stop(self) -> None:
        stop_process(self.proc)
        self.exit_code = self.proc.returncode

    def tail(self, lines: int = 30) -> str:
        return tail_file(self.log, lines)


class Sampler(threading.Thread):
    """/debug/state and /metrics every 0.2 s: peaks and quota breaches."""

    def __init__(self, admin: str, pid: int | None) -> None:
        super().__init__(name="sampler", daemon=True)
        self.admin, self.pid = admin, pid
        self.halt = threading.Event()
        self.lock = threading.Lock()
        self.samples = 0
        self.failures = 0
        self.peak_slots = 0
        self.peak_managers = 0.0
        self.peak_threads = 0
        self.peak_fds = 0
        self.last_slots: int | None = None
        self.breaches: list[dict[str, Any]] = []
        self.breach_count = 0

    def run(self) -> None:
        while not self.halt.wait(SAMPLE_EVERY):
            self.sample()

    def sample(self) -> tuple[dict[str, Any] | None, Metrics | None]:
        state, samples = read_state(self.admin), read_metrics(self.admin)
        with self.lock:
            self.samples += 1
            if state is None or samples is None:
                self.failures += 1
            if state is not None:
                root = state["root"]
                self.last_slots = int(root["slots_held"])
                self.peak_slots = max(self.peak_slots, self.last_slots)
                self.peak_threads = max(self.peak_threads, int(root["threads"]))
                for user in every_user(state):
                    used, limit = user.get("used"), user.get("limit")
                    if isinstance(used, int) and isinstance(limit, int) and used > limit:
                        self.breach_count += 1
                        if len(self.breaches) < 5:
                            self.breaches.append(
                                {"user_id": user.get("user_id"), "used": used, "limit": limit}
                            )
                node_used, node_limit = root.get("node_used"), root.get("node_limit")
                numbers = isinstance(node_used, int) and isinstance(node_limit, int)
                if numbers and node_used > node_limit:
                    self.breach_count += 1
            if samples is not None:
                active = metric(samples, "ws_supervisor_managers_active")
                self.peak_managers = max(self.peak_managers, active)
            if self.pid is not None:
                fds = count_fds(self.pid)
                if fds is not None:
                    self.peak_fds = max(self.peak_fds, fds)
        return state, samples


def read_state(admin: str) -> dict[str, Any] | None:
    try:
        status, body = http_get(admin + "/debug/state")
        if status != 200:
            return None
        state: dict[str, Any] = json.loads(body)
        return state
    except (OSError, ValueError):
        return None


def read_metrics(admin: str) -> Metrics | None:
    try:
        status, body = http_get(admin + "/metrics")
        return parse_metrics(body) if status == 200 else None
    except OSError:
        return None


def count_fds(pid: int) -> int | None:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


def fd_targets(pid: int) -> dict[str, str] | None:
    """The daemon's open files: fd number to what it points at (``socket:[inode]``, a path)."""
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return None
    targets = {}
    for fd in fds:
        with contextlib.suppress(OSError):  # closed since the listing
            targets[fd] = os.readlink(f"/proc/{pid}/fd/{fd}")
    return targets


def final_fds(pid: int | None, start: dict[str, str] | None) -> int | None:
    """The daemon's open files, read until back to the ``start`` count or for FD_SETTLE s.

    Any left beyond the start are named on stderr.
    """
    if pid is None or start is None:
        return None
    deadline = time.monotonic() + FD_SETTLE
    while (fds := count_fds(pid)) is not None and fds > len(start):
        if time.monotonic() >= deadline:
            extra = sorted(set((fd_targets(pid) or {}).items()) - set(start.items()))
            print(f"loadtest: open files left beyond the start: {extra}", file=sys.stderr)
            break
        time.sleep(0.1)
    return fds


@dataclass
class ClientRun:
    """One client process of the run."""

    proc: subprocess.Popen[str]
    slot: int
    fate: str  # "live", "kill" or "freeze"
    fate_at: float  # monotonic
    done: bool = False


class Clients:
    """Every client process: started, replaced, killed, frozen; their stats merged."""

    def __init__(self, options: Options, url: str, run_id: str) -> None:
        self.options = options
        self.url = url
        self.slots = min(options.procs, options.users)
        self.users = {
            slot: [f"lt-{run_id}-u{i}" for i in range(options.users) if i % self.slots == slot]
            for slot in range(self.slots)
        }
        self.generation = max(3.0, min(15.0, options.duration / 3))
        planned = self.slots * max(1, int(options.duration // self.generation))
        rng = random.Random(options.seed)
        order = list(range(planned))
        rng.shuffle(order)
        kills = _share(planned, options.kill_pct)
        freezes = min(_share(planned, options.freeze_pct), planned - kills)
        self.fates = {i: "kill" for i in order[:kills]}
        self.fates.update({i: "freeze" for i in order[kills : kills + freezes]})
        self.rng = rng
        self.runs: list[ClientRun] = []
        self.started = self.killed = self.frozen = 0
        self.lock = threading.Lock()
        self.counts: Counter[str] = Counter()
        self.codes: Counter[str] = Counter()
        self.latencies: list[float] = []
        self.population = options.users * options.per_user
        self.mean_life = max(0.5, min(self.generation, self.population / options.churn))

    def start(self, slot: int, lifetime: float, grace: float) -> None:
        index = self.started
        self.started += 1
        fate = self.fates.get(index, "live")
        argv = [sys.executable, str(Path(__file__).resolve()), "--exec-kill", sys.executable]
        argv += [str(Path(__file__).resolve()), "--client-proc", "--url", self.url]
        argv += ["--client-users", ",".join(self.users[slot])]
        argv += ["--per-user", str(self.options.per_user)]
        argv += ["--churn", str(self.options.churn / self.slots)]
        argv += ["--duration", f"{lifetime:.3f}", "--grace-until", f"{time.time() + grace:.3f}"]
        argv += ["--mean-life", f"{self.mean_life:.3f}", "--seed", str(self.options.seed + index)]
        argv += ["--resume-pct", str(self.options.resume_pct)]
        proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE, text=True, cwd=str(ROOT), start_new_session=True
        )
        fate_at = time.monotonic() + lifetime * self.rng.uniform(0.3, 0.7)
        run = ClientRun(proc, slot, fate, fate_at)
        self.runs.append(run)
        threading.Thread(target=self._read, args=(run,), daemon=True).start()

    def _read(self, run: ClientRun) -> None:
        assert run.proc.stdout is not None
        for line in run.proc.stdout:
            kind, _, payload = line.partition(" ")
            if kind != "stats":
                continue
            with contextlib.suppress(ValueError):
                data = json.loads(payload)
                with self.lock:
                    self.counts.update(data["c"])
                    self.codes.update(data["codes"])
                    self.latencies.extend(data["lat"])

    def running(self) -> list[ClientRun]:
        return [run for run in self.runs if not run.done and run.proc.poll() is None]

    def step(self, deadline: float) -> None:
        """Carry out due kills and freezes, replace processes that ended."""
        now = time.monotonic()
        remaining = deadline - now
        keepalive = self.options.keepalive
        for run in list(self.runs):
            if run.done:
                continue
            if run.proc.poll() is not None:
                run.done = True
                if remaining > 1.0:
                    self.start(run.slot, min(self.generation, remaining), RECENT_CLOSE)
            elif run.fate != "live" and now >= run.fate_at:
                run.done = True
                if run.fate == "kill":
                    run.proc.kill()
                    self.killed += 1
                else:
                    run.proc.send_signal(signal.SIGSTOP)
                    self.frozen += 1
                if remaining > 1.0:
                    self.start(run.slot, min(self.generation, remaining), keepalive + 1.5)

    def finish(self, timeout: float) -> None:
        """Let the live ones end by themselves, then kill every process left (frozen too)."""
        deadline = time.monotonic() + timeout
        for run in self.runs:
            if run.fate == "live" or not run.done:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    run.proc.wait(max(0.05, deadline - time.monotonic()))
        self.kill_all()

    def kill_all(self) -> None:
        for run in self.runs:
            if run.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    run.proc.kill()
        for run in self.runs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                run.proc.wait(5)
            if run.proc.stdout is not None:
                with contextlib.suppress(OSError):
                    run.proc.stdout.close()


def _share(total: int, pct: float) -> int:
    if pct <= 0:
        return 0
    return max(1, round(total * pct / 100))


class Progress:
    """A one-line progress bar on stderr (a plain line every 5 s when not a terminal)."""

    def __init__(self, total: float) -> None:
        self.total = total
        self.tty = sys.stderr.isatty()
        self.last = 0.0

    def show(self, elapsed: float, text: str) -> None:
        now = time.monotonic()
        if now - self.last < (0.25 if self.tty else 5.0):
            return
        self.last = now
        done = min(1.0, elapsed / self.total)
        bar = "#" * round(done * 30) + "-" * (30 - round(done * 30))
        line = f"[{bar}] {elapsed:5.1f}/{self.total:.0f}s {text}"
        if self.tty:
            sys.stderr.write("\r" + line[:150].ljust(150))
        else:
            sys.stderr.write(line + "\n")
        sys.stderr.flush()

    def end(self) -> None:
        if self.tty:
            sys.stderr.write("\n")
            sys.stderr.flush()


def wait_clean(admin: str, timeout: float, check: Any) -> tuple[bool, float, Any]:
    """Poll until ``check(state, metrics)`` is true; (ok, seconds waited, last reading)."""
    started = time.monotonic()
    last: Any = None
    while True:
        state, samples = read_state(admin), read_metrics(admin)
        if state is not None and samples is not None:
            last = (state, samples)
            if check(state, samples):
                return True, time.monotonic() - started, last
        if time.monotonic() - started >= timeout:
            return False, time.monotonic() - started, last
        time.sleep(SAMPLE_EVERY)


def _ms(seconds: float) -> float | None:
    return None if math.isnan(seconds) else round(seconds * 1000, 3)


@dataclass
class LeakCheck:
    """The daemon after the last client: at the grace deadline, then after the settle time."""

    grace: float
    slots_ok: bool
    slots_after: float
    slots_state: dict[str, Any] | None
    slots_metrics: Metrics | None
    threads_ok: bool
    threads_after: float
    final_state: dict[str, Any] | None
    final_metrics: Metrics | None


def check_leaks(admin: str, options: Options, threads_start: int) -> LeakCheck:
    """Slots and managers must be 0 within the grace; threads back within the settle time."""
    grace = options.keepalive + 2.0
    slots_ok, slots_after, at_grace = wait_clean(
        admin,
        grace,
        lambda state, samples: (
            state["root"]["slots_held"] == 0
            and metric(samples, "ws_supervisor_managers_active") == 0
        ),
    )
    # wait for every thread to be back (for the report); the verdict allows THREAD_ALLOWANCE
    _, threads_after, final = wait_clean(
        admin, options.settle, lambda state, _: state["root"]["threads"] <= threads_start
    )
    final_threads = final[0]["root"]["threads"] if final else None
    threads_ok = final_threads is not None and final_threads <= threads_start + THREAD_ALLOWANCE
    at_grace, final = at_grace or (None, None), final or at_grace or (None, None)
    return LeakCheck(
        grace,
        slots_ok,
        slots_after,
        at_grace[0],
        at_grace[1],
        threads_ok,
        threads_after,
        final[0],
        final[1],
    )


def drive(options: Options, clients: Clients, sampler: Sampler) -> None:
    """Run the client processes for the duration, with their kills and freezes."""
    progress = Progress(options.duration)
    began = time.monotonic()
    deadline = began + options.duration
    for slot in range(clients.slots):
        clients.start(slot, min(clients.generation, options.duration), 0.0)
    while (now := time.monotonic()) < deadline:
        clients.step(deadline)
        with clients.lock:
            admitted = clients.counts["admitted"]
            quota = clients.counts["rejected_at_quota"]
        progress.show(
            now - began,
            f"procs {len(clients.running())} (started {clients.started}, killed "
            f"{clients.killed}, frozen {clients.frozen}) admitted {admitted} 429 {quota} "
            f"slots {sampler.last_slots}",
        )
        time.sleep(0.05)
    progress.end()
    clients.finish(timeout=12.0)


def run(options: Options) -> int:
    logdir = Path(tempfile.mkdtemp(prefix="ws-loadtest-"))
    daemon: Daemon | None = None
    clients: Clients | None = None

    def on_term(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    try:
        url, admin, pid = options.url, options.admin, options.pid
        if options.spawn:
            daemon = Daemon(options.per_user, logdir)
            if not daemon.wait_ready():
                print(f"loadtest: the daemon did not start:\n{daemon.tail()}", file=sys.stderr)
                return EXIT_UNREACHABLE
            url, admin, pid = daemon.url, daemon.admin, daemon.proc.pid
        start_state, start_metrics = read_state(admin), read_metrics(admin)
        if start_state is None or start_metrics is None:
            print(f"loadtest: cannot read {admin}/debug/state and /metrics", file=sys.stderr)
            return EXIT_UNREACHABLE
        threads_start = int(start_state["root"]["threads"])
        files_start = fd_targets(pid) if pid is not None else None
        fds_start = None if files_start is None else len(files_start)
        sampler = Sampler(admin, pid)
        sampler.start()
        clients = Clients(options, url, secrets.token_hex(3))
        drive(options, clients, sampler)
        leaks = check_leaks(admin, options, threads_start)
        sampler.halt.set()
        sampler.join(5)
        fds = (fds_start, final_fds(pid, files_start))
        report = build_report(
            options,
            clients,
            sampler=sampler,
            start_metrics=start_metrics,
            leaks=leaks,
            threads_start=threads_start,
            fds=fds,
        )
    except KeyboardInterrupt:
        print("\nloadtest: interrupted", file=sys.stderr)
        return 130
    finally:
        if clients is not None:
            clients.kill_all()
        daemon_log = ""
        if daemon is not None:
            daemon.stop()
            daemon_log = daemon.tail()
        shutil.rmtree(logdir, ignore_errors=True)
    if daemon is not None:
        report["daemon_exit_code"] = daemon.exit_code
        if not report["ok"]:
            report["daemon_log_tail"] = daemon_log
    print_report(report)
    if options.json:
        Path(options.json).write_text(json.dumps(report, indent=2) + "\n")
    return EXIT_OK if report["ok"] else EXIT_FAILED


def build_report(
    options: Options,
    clients: Clients,
    *,
    sampler: Sampler,
    start_metrics: Metrics,
    leaks: LeakCheck,
    threads_start: int,
    fds: tuple[int | None, int | None],
) -> dict[str, Any]:
    final_metrics = leaks.final_metrics or {}
    counts = clients.counts
    errors = {k.removeprefix("error_"): v for k, v in counts.items() if k.startswith("error_")}
    at_quota = counts["rejected_at_quota"]
    attempts = counts["admitted"] + at_quota + counts["rejected_below_quota"] + sum(errors.values())
    counted = attempts - at_quota
    start_buckets, end_buckets = release_buckets(start_metrics), release_buckets(final_metrics)
    buckets = {le: end_buckets[le] - start_buckets.get(le, 0.0) for le in end_buckets}
    name = "ws_supervisor_thread_id_mismatches_total"
    mismatches_server = metric(final_metrics, name) - metric(start_metrics, name)
    name = "ws_supervisor_admissions_total"
    before = labelled(start_metrics, name, "result")
    server_admissions = {
        result: value - before.get(result, 0.0)
        for result, value in labelled(final_metrics, name, "result").items()
        if value - before.get(result, 0.0) > 0
    }
    grace_root = (leaks.slots_state or {}).get("root", {})
    grace_slots = grace_root.get("slots_held")
    grace_managers = (
        None
        if leaks.slots_metrics is None
        else metric(leaks.slots_metrics, "ws_supervisor_managers_active")
    )
    final_threads = (leaks.final_state or {}).get("root", {}).get("threads")
    failures: list[str] = []
    if not leaks.slots_ok:
        failures.append(
            f"leak: slots_held={grace_slots} managers_active={grace_managers} "
            f"{leaks.grace:.1f}s after the last client was gone"
        )
    if not leaks.threads_ok:
        failures.append(
            f"leak: threads {final_threads} > start {threads_start} + {THREAD_ALLOWANCE} "
            f"{leaks.grace + options.settle:.1f}s after the last client was gone"
        )
    if fds[0] is not None and fds[1] is not None and fds[1] > fds[0]:
        failures.append(
            f"leak: open files {fds[1]} > start {fds[0]} {FD_SETTLE:g}s after the other checks"
        )
    if sampler.breach_count:
        failures.append(f"quota breach in {sampler.breach_count} sample(s): {sampler.breaches}")
    if mismatches_server:
        failures.append(f"ws_supervisor_thread_id_mismatches_total rose by {mismatches_server:.0f}")
    for kind in ("welcome_mismatch", "echo_mismatch"):
        if counts[kind]:
            failures.append(f"{counts[kind]} {kind.replace('_', ' ')}(es) seen by clients")
    if leaks.final_state is None or not final_metrics:
        failures.append("the daemon could not be read at the end")
    return {
        "ok": not failures,
        "failures": failures,
        "config": {
            "users": options.users,
            "per_user": options.per_user,
            "churn_per_s": options.churn,
            "kill_pct": options.kill_pct,
            "freeze_pct": options.freeze_pct,
            "procs": clients.slots,
            "duration_s": options.duration,
            "spawn": options.spawn,
            "seed": options.seed,
            "command": shlex.join(sys.argv),
        },
        "processes": {
            "started": clients.started,
            "killed": clients.killed,
            "frozen": clients.frozen,
        },
        "connect_ms": {
            "p50": _ms(percentile(clients.latencies, 50)),
            "p99": _ms(percentile(clients.latencies, 99)),
            "n": len(clients.latencies),
        },
        "admissions": {
            "attempts": attempts,
            "admitted": counts["admitted"],
            "rejected_at_quota": at_quota,
            "rejected_below_quota": counts["rejected_below_quota"],
            "errors": errors,
            "success_rate": round(counts["admitted"] / counted, 4) if counted else None,
        },
        "server_admissions": server_admissions,
        "frames": counts["frames"],
        "close_codes": dict(sorted(clients.codes.items())),
        "slots": {
            "peak_slots_held": sampler.peak_slots,
            "peak_managers_active": sampler.peak_managers,
            "final_slots_held": grace_slots,
            "final_managers_active": grace_managers,
            "free_after_s": round(leaks.slots_after, 2),
        },
        "threads": {
            "start": threads_start,
            "peak": sampler.peak_threads,
            "final": final_threads,
            "back_after_s": round(leaks.threads_after, 2),
        },
        "fds": None
        if fds[0] is None
        else {"start": fds[0], "peak": max(sampler.peak_fds, fds[0]), "final": fds[1]},
        "release_latency_ms": {
            "p50": _ms(histogram_quantile(0.5, buckets)),
            "p99": _ms(histogram_quantile(0.99, buckets)),
            "n": int(max(buckets.values(), default=0)),
        },
        "quota_breaches": sampler.breach_count,
        "mismatches": {
            "server": int(mismatches_server),
            "welcome": counts["welcome_mismatch"],
            "echo": counts["echo_mismatch"],
        },
        "samples": {"taken": sampler.samples, "failed": sampler.failures},
    }


def print_report(report: dict[str, Any]) -> None:
    config, processes = report["config"], report["processes"]
    admissions, slots, threads = report["admissions"], report["slots"], report["threads"]
    connect, release = report["connect_ms"], report["release_latency_ms"]
    rate = admissions["success_rate"]
    fds = report["fds"]
    lines = [
        f"ws-supervisor load test: {config['duration_s']:.0f}s, {config['users']} users x "
        f"{config['per_user']}, churn {config['churn_per_s']:g}/s, {config['procs']} client procs "
        f"(started {processes['started']}, killed {processes['killed']}, "
        f"frozen {processes['frozen']})",
        f"connect->welcome  p50 {connect['p50']} ms  p99 {connect['p99']} ms  (n={connect['n']})",
        f"admission         {admissions['admitted']}/{admissions['attempts']} admitted; "
        f"429 at quota {admissions['rejected_at_quota']} (not failures), "
        f"429 below quota {admissions['rejected_below_quota']}, errors {admissions['errors']}; "
        f"success {'n/a' if rate is None else f'{rate:.1%}'} of non-quota attempts",
        f"server admissions {report['server_admissions']}",
        f"frames            {report['frames']} echo/ping round trips; "
        f"close codes {report['close_codes']}",
        f"slots             peak {slots['peak_slots_held']} (slots_held), peak managers_active "
        f"{slots['peak_managers_active']:.0f}; final {slots['final_slots_held']} / "
        f"{slots['final_managers_active']} (after {slots['free_after_s']}s)",
        f"threads           start {threads['start']}, peak {threads['peak']}, final "
        f"{threads['final']} (after {threads['back_after_s']}s more)",
        "fds               "
        + (
            "n/a (no --pid)"
            if fds is None
            else f"start {fds['start']}, peak {fds['peak']}, final {fds['final']}"
        ),
        f"close->free       p50 {release['p50']} ms  p99 {release['p99']} ms  "
        f"(ws_supervisor_release_latency_seconds, n={release['n']}, bucket interpolation)",
        f"quota breaches    {report['quota_breaches']}",
        f"mismatches        server {report['mismatches']['server']}, welcome ids "
        f"{report['mismatches']['welcome']}, echo {report['mismatches']['echo']}",
    ]
    if "daemon_exit_code" in report:
        lines.append(f"daemon exit code  {report['daemon_exit_code']}")
    lines.append("verdict           " + ("OK" if report["ok"] else "FAIL"))
    lines.extend(f"  - {failure}" for failure in report["failures"])
    if report.get("daemon_log_tail"):
        lines.append("daemon log (tail):\n" + report["daemon_log_tail"])
    print("\n".join(lines))


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    profile = ci_profile()
    timeouts = profile.get("timeouts", {})
    keepalive = float(timeouts.get("ping_interval", 1.0)) + float(timeouts.get("ping_timeout", 1.0))
    settle = (
        float(profile.get("pool", {}).get("idle_seconds", 2.0))
        + float(profile.get("cleanup", {}).get("empty_supervisor_ttl", 2.0))
        + 2.0
    )
    parser = argparse.ArgumentParser(
        prog="scripts/loadtest", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--url", default="ws://127.0.0.1:8765/ws", help="the WebSocket endpoint")
    parser.add_argument("--admin", default="http://127.0.0.1:8766", help="the admin listener")
    parser.add_argument("--users", type=int, default=8, help="distinct users (default 8)")
    parser.add_argument("--per-user", type=int, default=5, help="connections per user (quota)")
    parser.add_argument("--churn", type=float, default=20.0, help="new connections per second")
    parser.add_argument("--kill-pct", type=float, default=0.0, help="%% of client procs SIGKILLed")
    parser.add_argument("--freeze-pct", type=float, default=0.0, help="%% of client procs frozen")
    parser.add_argument("--procs", type=int, default=4, help="concurrent client processes")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of load")
    parser.add_argument("--pid", type=int, help="the daemon's pid, to count its open fds")
    parser.add_argument("--spawn", action="store_true", help="start (and stop) the daemon")
    parser.add_argument("--json", metavar="FILE", help="write the report as JSON")
    parser.add_argument("--seed", type=int, default=1, help="random seed")
    parser.add_argument("--resume-pct", type=float, default=20.0, help="%% resuming a thread")
    parser.add_argument(
        "--keepalive",
        type=float,
        default=keepalive,
        help=f"the daemon's ping_interval + ping_timeout (default {keepalive:g}, the ci profile)",
    )
    parser.add_argument(
        "--settle",
        type=float,
        default=settle,
        help=f"seconds allowed for threads to come back after the grace (default {settle:g})",
    )
    parser.add_argument("--allow-remote", action="store_true", help="allow a non-loopback host")
    internal = parser.add_argument_group("internal")
    internal.add_argument("--client-proc", action="store_true", help=argparse.SUPPRESS)
    internal.add_argument("--client-users", default="", help=argparse.SUPPRESS)
    internal.add_argument("--grace-until", type=float, default=0.0, help=argparse.SUPPRESS)
    internal.add_argument("--mean-life", type=float, default=1.0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    problems = []
    if args.users < 1 or args.per_user < 1 or args.procs < 1:
        problems.append("--users, --per-user and --procs must be >= 1")
    if args.churn <= 0 or not 0 < args.duration <= 3600:
        problems.append("--churn must be > 0 and --duration in (0, 3600]")
    if not (0 <= args.kill_pct <= 100 and 0 <= args.freeze_pct <= 100):
        problems.append("--kill-pct and --freeze-pct are percentages")
    if args.kill_pct + args.freeze_pct > 100:
        problems.append("--kill-pct + --freeze-pct must be <= 100")
    hosts = {urlsplit(args.url).hostname, urlsplit(args.admin).hostname}
    if not args.spawn and not args.allow_remote and not hosts <= LOOPBACK:
        problems.append(f"not loopback: {sorted(str(h) for h in hosts)} (--allow-remote)")
    if problems:
        parser.error("; ".join(problems))
    return args


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["--exec"]:
        exec_child(arguments[1:], signal.SIGTERM)
    if arguments[:1] == ["--exec-kill"]:
        exec_child(arguments[1:], signal.SIGKILL)
    args = parse_args(arguments)
    if args.client_proc:
        spec = ClientSpec(
            url=args.url,
            users=[user for user in args.client_users.split(",") if user],
            per_user=args.per_user,
            rate=args.churn,
            lifetime=args.duration,
            grace_until=args.grace_until,
            mean_life=args.mean_life,
            resume_pct=args.resume_pct,
            seed=args.seed,
        )
        asyncio.run(client_process(spec))
        return EXIT_OK
    options = Options(
        url=args.url,
        admin=args.admin.rstrip("/"),
        users=args.users,
        per_user=args.per_user,
        churn=args.churn,
        kill_pct=args.kill_pct,
        freeze_pct=args.freeze_pct,
        procs=args.procs,
        duration=args.duration,
        pid=args.pid,
        spawn=args.spawn,
        json=args.json,
        seed=args.seed,
        keepalive=args.keepalive,
        settle=args.settle,
        resume_pct=args.resume_pct,
    )
    return run(options)


if __name__ == "__main__":
    sys.exit(main())
