"""``scripts/bench``'s child processes: the servers under test and the load generators.

:class:`Children` starts and stops every one, :class:`ClientProc` is the
parent's side of a load generator, :class:`Server` (:func:`start_server`)
one server under test, and :class:`Probe` what ``/proc`` says of it and of
every process under it. The tools built on the bench (``scripts/scale``,
``scripts/instructions``, ...) start theirs the same way. Every child runs
:data:`ENTRY` (``--exec``, ``--serve-bare`` or ``--client``).
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _toolkit import (  # scripts/ is on sys.path when run as a script
    HOST,
    ROOT,
    free_port,
    http_get,
    stop_process,
    supervisor_command,
    tail_file,
)

__all__ = [
    "CLK_TCK",
    "ENTRY",
    "Children",
    "ClientProc",
    "Probe",
    "Server",
    "context_switches",
    "count_lines",
    "cpu_seconds",
    "proc_status",
    "process_tree",
    "start_server",
]

ENTRY = Path(__file__).resolve().with_name("bench.py")
"""``scripts/bench.py``, which every child runs: ``--exec ARGV``, ``--serve-bare``, ``--client``."""

CLK_TCK = os.sysconf("SC_CLK_TCK")


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


class Children:
    """Every child process this run starts; all stopped at the end, whatever happens."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[str]] = []

    def start(self, argv: list[str], **kwargs: Any) -> subprocess.Popen[str]:
        wrapped = [sys.executable, str(ENTRY), "--exec", *argv]
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
            argv = [*wrapper, sys.executable, str(ENTRY), "--serve-bare"]
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
