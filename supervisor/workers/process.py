"""One worker seat of the master: the worker process in it, its channel, its output.

A :class:`WorkerProcess` is seat ``index`` of ``serve --workers N``; the
processes that fill it come one after another (a crashed one is replaced
in the same seat, so the same users). It starts each with
``python -m supervisor.cli worker --channel-fd FD``, in a session of its
own, sends the setup on the channel, and waits for ``ready`` (or the
process's end: :class:`WorkerFailed` with its exit status and last lines).
The worker's stderr comes to the master, which passes it on, whole lines
at a time, to its own log writer and keeps the last lines to say why a
worker died. Each process of a seat has its own node id
(``<daemon>-w<index>``, then ``-<n>`` for the n-th replacement), so that
what a dead one held in a shared ledger is never confused with what its
successor takes. Runs on the master's event loop.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable

from supervisor.errors import WorkerFailed
from supervisor.workers.handoff import Channel
from supervisor.workers.seat import Setup, admin_socket_path

__all__ = ["USERS_KEPT", "WorkerProcess", "describe_exit"]

log = logging.getLogger(__name__)

USERS_KEPT = 1_000_000
"""Users a seat remembers handing over (for a shared ledger's clean-up); past it, none."""

_LINES_KEPT = 20
_START_TIMEOUT = 60.0


def describe_exit(returncode: int) -> str:
    """``killed by SIGKILL`` or ``exit status 3``."""
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit status {returncode}"


class WorkerProcess:
    """Seat ``index``: the worker serving its users now, and how it got there."""

    def __init__(
        self,
        index: int,
        *,
        run_dir: str,
        daemon_id: str,
        refuse: Callable[[socket.socket], None],
        log_text: Callable[[str], None],
    ) -> None:
        self.index = index
        self.run_dir = run_dir
        self.daemon_id = daemon_id
        self.refuse = refuse
        self.log_text = log_text
        self.generation = 0
        self.restarts = 0
        self.started_at = 0.0
        self.process: asyncio.subprocess.Process | None = None
        self.channel: Channel | None = None
        self.users: set[str] | None = set()
        self._ready = False
        self._lines: collections.deque[str] = collections.deque(maxlen=_LINES_KEPT)
        self._output: asyncio.Task[None] | None = None

    # --- what the admin backend reads ---------------------------------------------------

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    @property
    def node_id(self) -> str:
        """This seat's node id now: ``<daemon>-w<index>``, ``-<n>`` after the n-th restart."""
        suffix = f"-w{self.index}" + (f"-{self.generation}" if self.generation else "")
        return self.daemon_id[: 64 - len(suffix)] + suffix

    @property
    def serving(self) -> bool:
        """True from ``ready`` until the process ends."""
        return self._ready and self.process is not None and self.process.returncode is None

    @property
    def admin_path(self) -> str:
        return admin_socket_path(self.run_dir, self.index)

    @property
    def last_lines(self) -> str:
        """The last lines the current process wrote to stderr."""
        return "\n".join(self._lines)

    # --- the process ----------------------------------------------------------------------

    async def start(self, setup: Setup, timeout: float = _START_TIMEOUT) -> None:
        """Start a worker in this seat and wait until it serves; :class:`WorkerFailed` if not."""
        self._ready = False
        self._lines.clear()
        self.users = set()
        mine, theirs = Channel.pair()
        try:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "supervisor.cli",
                "worker",
                "--channel-fd",
                str(theirs.fileno()),
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                start_new_session=True,  # a terminal's Ctrl-C is the master's alone
            )
        finally:
            theirs.close()
        self.channel = Channel(mine, refuse=self.refuse)
        assert self.process.stderr is not None
        self._output = asyncio.ensure_future(self._pass_on(self.process.stderr))
        ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def control(message: dict[str, object]) -> None:
            if "ready" in message and not ready.done():
                ready.set_result(None)

        self.channel.send_control(setup.to_message())
        self.channel.receive(_unexpected, control, lambda: None)
        ended: asyncio.Future[None] = asyncio.ensure_future(self._ended())
        try:
            await asyncio.wait([ready, ended], timeout=timeout, return_when="FIRST_COMPLETED")
        finally:
            ended.cancel()
        if not ready.done():
            ready.cancel()
            await self._failed_to_start(timeout)
        self._ready = True
        self.started_at = time.time()

    async def _ended(self) -> None:
        assert self.process is not None
        await self.process.wait()

    async def _failed_to_start(self, timeout: float) -> None:
        assert self.process is not None
        if self.process.returncode is None:
            self.process.kill()
            why = f"not ready within {timeout:g}s"
        else:
            why = describe_exit(self.process.returncode)
        await self.wait()
        self.gone()
        lines = self.last_lines or "(nothing on stderr)"
        raise WorkerFailed(f"worker {self.index} did not start ({why}); its last lines:\n{lines}")

    async def wait(self) -> int:
        """The current process's exit status, once it has ended and its output is passed on."""
        assert self.process is not None
        code = await self.process.wait()
        if self._output is not None:
            await self._output
        return code

    def gone(self) -> None:
        """The process ended: close its channel (what waited on it is refused)."""
        self._ready = False
        if self.channel is not None:
            self.channel.close()
            self.channel = None

    def signal(self, signum: signal.Signals) -> None:
        """Send ``signum`` to the current process, if it runs."""
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(signum)

    def hand_off(self, user_id: str, prefix: bytes, conn: socket.socket) -> bool:
        """Loop: give ``conn`` to this worker; False if it cannot take it now."""
        if not self._ready or self.channel is None:
            return False
        if not self.channel.hand_off(user_id, prefix, conn):
            return False
        users = self.users
        if users is not None and user_id:
            users.add(user_id)
            if len(users) > USERS_KEPT:
                self.users = None  # too many to list: a clean-up scans instead
        return True

    async def _pass_on(self, stderr: asyncio.StreamReader) -> None:
        """The worker's stderr, whole lines at a time, to the master's log."""
        pending = b""
        while chunk := await stderr.read(1 << 16):
            pending += chunk
            whole, newline, pending = pending.rpartition(b"\n")
            if newline:
                text = whole.decode(errors="replace")
                self._lines.extend(text.splitlines()[-_LINES_KEPT:])
                self.log_text(text)
        if pending:
            text = pending.decode(errors="replace")
            self._lines.append(text)
            self.log_text(text)


def _unexpected(user_id: str, prefix: bytes, sock: socket.socket) -> None:
    """A worker sends no connection to the master."""
    sock.close()
