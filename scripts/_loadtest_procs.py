"""``scripts/loadtest``'s child processes: the daemon (``--spawn``) and the client processes.

:class:`Options` is the command line, checked; :class:`Daemon` is a
``ws-supervisor serve --profile ci`` this tool starts and stops;
:class:`Clients` starts the client processes (:class:`ClientRun`, each
``--client-proc``: ``scripts/_loadtest_client.py``), kills or freezes those
whose fate it is, replaces those that ended and merges their stats. Every
child runs :data:`ENTRY` (``--exec`` or ``--exec-kill``).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from _loadtest_client import RECENT_CLOSE  # scripts/ is on sys.path when run as a script
from _toolkit import HOST, ROOT, free_port, http_get, stop_process, supervisor_command, tail_file

__all__ = ["ENTRY", "ClientRun", "Clients", "Daemon", "Options"]

ENTRY = Path(__file__).resolve().with_name("loadtest.py")
"""``scripts/loadtest.py``, which every child runs: ``--exec ARGV`` or ``--exec-kill ARGV``."""


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
        wrapped = [sys.executable, str(ENTRY), "--exec", *argv]
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
        argv = [sys.executable, str(ENTRY), "--exec-kill", sys.executable]
        argv += [str(ENTRY), "--client-proc", "--url", self.url]
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
