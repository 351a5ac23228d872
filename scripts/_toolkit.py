"""Helpers shared by scripts/bench.py, scripts/loadtest.py and the cluster tests (loopback only).

The scripts and the tests (``tests/cluster/redis_server.py``) import it as ``_toolkit``:
scripts/ is on ``sys.path`` when a script runs, and pytest puts it there too.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path

import redis

__all__ = [
    "HOST",
    "ROOT",
    "RedisServer",
    "exec_child",
    "free_port",
    "free_ports",
    "http_get",
    "percentile",
    "raise_fd_limit",
    "redis_server_binary",
    "running_redis",
    "stop_process",
    "supervisor_command",
    "tail_file",
]

ROOT = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"


def free_port() -> int:
    """A loopback port that was free a moment ago."""
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


def free_ports(count: int) -> list[int]:
    """``count`` loopback ports, each free a moment ago, no two alike."""
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile (``pct`` in 0..100); NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(pct / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def raise_fd_limit() -> None:
    """Let this process hold as many sockets as the hard limit allows."""
    with contextlib.suppress(ValueError, OSError):
        _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def exec_child(argv: list[str], death_signal: int = signal.SIGTERM) -> None:
    """``--exec CMD...``: get ``death_signal`` when the parent dies, allow many sockets, exec.

    Client processes get SIGKILL (a frozen one ignores anything else until
    continued); servers get SIGTERM, so that they drain.
    """
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, death_signal)  # PR_SET_PDEATHSIG; survives exec
    raise_fd_limit()
    os.execvp(argv[0], argv)


def http_get(url: str, timeout: float = 2.0) -> tuple[int, str]:
    """GET ``url``: (status, body)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def supervisor_command() -> list[str]:
    """How to run ``ws-supervisor``: the venv's entry point, else PATH, else the module."""
    venv = ROOT / ".venv" / "bin" / "ws-supervisor"
    if venv.exists():
        return [str(venv)]
    found = shutil.which("ws-supervisor")
    return [found] if found else [sys.executable, "-m", "supervisor.cli"]


def stop_process(proc: subprocess.Popen[bytes] | subprocess.Popen[str]) -> None:
    """SIGTERM (a daemon drains), then SIGKILL if it is not gone within 20 s."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def tail_file(path: Path, lines: int) -> str:
    """The last ``lines`` lines of a log file ("" if it cannot be read)."""
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    return ""


# --- a redis-server of our own (the cluster tests, bench --redis) --------------------


def redis_server_binary() -> str:
    """The path of ``redis-server``; raises with advice when it is missing."""
    found = shutil.which("redis-server") or (
        "/usr/bin/redis-server" if shutil.which("/usr/bin/redis-server") else None
    )
    if found is None:
        raise RuntimeError("redis-server not found: run scripts/test, which installs it")
    return found


class RedisServer:
    """One ``redis-server`` process on 127.0.0.1, no persistence; restartable on its port.

    ``launcher`` goes before the command (the benchmark's ``--exec``, so that
    the server dies with it).
    """

    def __init__(self, port: int | None = None, launcher: Sequence[str] = ()) -> None:
        self.port = port or free_port()
        self.launcher = list(launcher)
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(host=HOST, port=self.port, socket_timeout=2.0)

    def start(self, timeout: float = 10.0) -> RedisServer:
        command = [
            *self.launcher,
            redis_server_binary(),
            "--port", str(self.port),
            "--bind", HOST,
            "--save", "",
            "--appendonly", "no",
            "--protected-mode", "yes",
            "--loglevel", "warning",
        ]  # fmt: skip
        self._process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + timeout
        client = self.client()
        try:
            while True:
                try:
                    client.ping()
                    return self
                except redis.ConnectionError:
                    if self._process.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(f"redis-server did not start on {self.port}") from None
                    time.sleep(0.02)
        finally:
            client.close()

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def keys(self, pattern: str = "*") -> list[str]:
        """Every key matching ``pattern``, decoded and sorted."""
        client = self.client()
        try:
            return sorted(key.decode() for key in client.scan_iter(match=pattern))
        finally:
            client.close()


@contextlib.contextmanager
def running_redis() -> Iterator[RedisServer]:
    """A fresh server for the block, stopped after it."""
    server = RedisServer().start()
    try:
        yield server
    finally:
        server.stop()
