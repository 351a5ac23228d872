"""Helpers shared by scripts/bench.py and scripts/loadtest.py (loopback only)."""

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
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

__all__ = [
    "HOST",
    "ROOT",
    "exec_child",
    "free_port",
    "http_get",
    "percentile",
    "raise_fd_limit",
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
