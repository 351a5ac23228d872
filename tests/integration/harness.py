"""Running the real daemon for tests: in-process on port 0, or as a real process."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from supervisor.config.schema import Config
from supervisor.daemon import Daemon
from tests.helpers import make_config

ROOT = Path(__file__).resolve().parents[2]
CLI = str(ROOT / ".venv" / "bin" / "ws-supervisor")
if not Path(CLI).exists():  # installed elsewhere (a different venv): take the one on PATH
    CLI = "ws-supervisor"


def free_port() -> int:
    """A loopback port that was free a moment ago."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def loopback_config(overrides: Mapping[str, Any] | None = None) -> Config:
    """The ci profile on 127.0.0.1 with ephemeral ports, plus ``overrides``."""
    base: dict[str, Any] = {
        "server": {"host": "127.0.0.1", "port": 0},
        "admin": {"host": "127.0.0.1", "port": 0},
    }
    for section, values in (overrides or {}).items():
        base[section] = {**base.get(section, {}), **values}
    return make_config(base)


@contextlib.asynccontextmanager
async def running_daemon(
    overrides: Mapping[str, Any] | None = None, env: Mapping[str, str] | None = None
) -> AsyncIterator[Daemon]:
    """A real daemon on this loop, ready to serve; drained and stopped on exit.

    ``env`` is the environment it reads secrets from (none by default).
    """
    daemon = Daemon(loopback_config(overrides), env=env or {})
    ready = asyncio.Event()
    task = asyncio.create_task(daemon.serve(on_ready=lambda _: ready.set()))
    waiter = asyncio.create_task(ready.wait())
    await asyncio.wait([task, waiter], return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        waiter.cancel()
        task.result()  # raise the startup error
    try:
        yield daemon
    finally:
        daemon.request_stop()
        await asyncio.wait_for(task, 30)


async def recv_json(ws: ClientConnection, timeout: float = 5.0) -> Any:
    """The next frame, parsed."""
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


async def ping_ok(ws: ClientConnection) -> None:
    """A ping round trip: the very next frame must be the pong (nothing foreign came first)."""
    await ws.send(json.dumps({"type": "ping"}))
    assert await recv_json(ws) == {"type": "pong"}


async def open_client(url: str, **kwargs: Any) -> tuple[ClientConnection, dict[str, Any]]:
    """A connected client and its welcome frame."""
    ws = await connect(url, open_timeout=5, **kwargs)
    welcome = await recv_json(ws)
    assert welcome["type"] == "welcome", welcome
    return ws, welcome


async def open_ws(url: str, **kwargs: Any) -> ClientConnection:
    """A connected client whose welcome has been read."""
    return (await open_client(url, **kwargs))[0]


async def wait_for(predicate: Callable[[], bool], timeout: float = 5.0, what: str = "") -> None:
    """Poll ``predicate`` on the loop until true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or predicate}")
        await asyncio.sleep(0.005)


def ws_url(daemon: Daemon, user: str | None = "alice", **params: str) -> str:
    """The daemon's WebSocket URL for ``user`` (query auth) and extra query parameters."""
    query = {"user_id": user, **params} if user is not None else params
    text = "&".join(f"{k}={v}" for k, v in query.items())
    return f"ws://127.0.0.1:{daemon.front.port}{daemon.config.server.path}?{text}"


class DaemonProcess:
    """``ws-supervisor serve`` as a real child process on loopback ports.

    Its output goes to an unnamed temporary file, or with ``unread_pipe`` to
    a pipe that nobody reads until :meth:`read_to_end`.
    """

    def __init__(
        self,
        config_path: Path | None,
        env: Mapping[str, str] | None = None,
        *,
        unread_pipe: bool = False,
        argv: Sequence[str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        """Serve ``config_path``, or run ``argv`` instead (another install's ``serve``)."""
        self.port = free_port()
        self.admin_port = free_port()
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("WS_SUPERVISOR_")},
            "WS_SUPERVISOR_SERVER_HOST": "127.0.0.1",
            "WS_SUPERVISOR_SERVER_PORT": str(self.port),
            "WS_SUPERVISOR_ADMIN_PORT": str(self.admin_port),
            **(env or {}),
        }
        self._log = tempfile.TemporaryFile(mode="w+", encoding="utf-8", errors="replace")  # noqa: SIM115 - closed by kill()
        if argv is None:
            argv = [CLI, "serve", "--config", str(config_path)]
        self.proc = subprocess.Popen(
            list(argv),
            cwd=cwd,
            env=self.env,
            stdout=subprocess.PIPE if unread_pipe else self._log,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def read_to_end(self, timeout: float = 30.0) -> str:
        """With ``unread_pipe``: read the pipe until the daemon exits; everything it wrote."""
        out, _ = self.proc.communicate(timeout=timeout)
        self._log.write(out)
        return out

    @property
    def admin(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    def url(self, user: str = "alice", **params: str) -> str:
        query = "&".join(f"{k}={v}" for k, v in {"user_id": user, **params}.items())
        return f"ws://127.0.0.1:{self.port}/ws?{query}"

    def get(self, path: str, timeout: float = 5.0) -> tuple[int, Any]:
        """GET an admin path: (status, parsed JSON or text)."""
        try:
            with urllib.request.urlopen(self.admin + path, timeout=timeout) as response:
                status, body = response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            status, body = error.code, error.read().decode()
        try:
            return status, json.loads(body)
        except ValueError:
            return status, body

    def wait_ready(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"daemon exited {self.proc.returncode}: {self.output()}")
            with contextlib.suppress(OSError):
                if self.get("/healthz", timeout=1)[0] == 200:
                    return
            time.sleep(0.05)
        raise AssertionError(f"daemon not ready in {timeout}s: {self.output()}")

    def signal(self, signum: signal.Signals) -> None:
        self.proc.send_signal(signum)

    def wait(self, timeout: float = 20.0) -> int:
        return self.proc.wait(timeout)

    def output(self) -> str:
        """Everything the daemon has written so far."""
        self._log.seek(0)
        return self._log.read()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate(timeout=10)  # reads an unread pipe too: the daemon can end
        if not self._log.closed:
            self._log.close()


def python() -> str:
    """This interpreter, for client processes."""
    return sys.executable


async def admin_get(daemon: Daemon, path: str) -> tuple[int, str]:
    """GET an admin path of an in-process daemon, off its loop: (status, body text)."""

    def get() -> tuple[int, str]:
        target = f"http://127.0.0.1:{daemon.admin.port}{path}"
        try:
            with urllib.request.urlopen(target, timeout=5) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()

    return await asyncio.to_thread(get)
