"""A worker's side of ``serve --workers N``: what the master gives it, and its link back.

A worker is a daemon (:class:`supervisor.daemon.Daemon`) started by the
master as ``ws-supervisor worker --channel-fd FD``, in a session of its
own (a terminal's Ctrl-C reaches the master only). Its :class:`WorkerSeat`:

- reads the setup the master sends first on the channel (the worker's
  index, the master's config, the run directory): :meth:`WorkerSeat.join`,
  blocking, before the worker's loop runs;
- asks for SIGTERM when the master dies (``PR_SET_PDEATHSIG``), so that a
  worker never outlives its master: it drains, as on the master's SIGTERM;
- gives the front a Unix socket to serve that nobody can connect to (bound
  in the master's private run directory, then unlinked): the worker's
  connections all come from the master, handed over on the channel;
- names the Unix socket the worker's admin listener serves, in the same
  directory (0700: only the daemon's user reaches it), for the master;
- on the worker's loop, passes every hand-off to the front, says ``ready``
  once the daemon serves, and tells the daemon when the master is gone.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs

from supervisor.config.load import parse_config
from supervisor.config.schema import Config
from supervisor.workers.handoff import Channel

__all__ = ["Setup", "WorkerSeat", "admin_socket_path"]

_PR_SET_PDEATHSIG = 1
_SETUP_TIMEOUT = 30.0


def admin_socket_path(run_dir: str, index: int) -> str:
    """Where worker ``index``'s admin listener serves, in the master's run directory."""
    return str(Path(run_dir) / f"worker-{index}-admin.sock")


@attrs.frozen
class Setup:
    """What the master tells a worker it starts: the first message on its channel."""

    index: int
    workers: int
    config: dict[str, Any]
    config_path: str | None
    run_dir: str
    master_pid: int

    def to_message(self) -> dict[str, Any]:
        return {"setup": attrs.asdict(self)}

    @classmethod
    def from_message(cls, message: dict[str, Any]) -> Setup:
        return cls(**message["setup"])


class WorkerSeat:
    """A worker's link to its master; built by :meth:`join` at the worker's start."""

    def __init__(self, channel: Channel, setup: Setup) -> None:
        self.channel = channel
        self.setup = setup
        self.index = setup.index

    @classmethod
    def join(cls, fd: int, timeout: float = _SETUP_TIMEOUT) -> WorkerSeat:
        """Main thread, before the loop: take the channel ``fd`` and read the setup.

        Raises OSError or ValueError when no setup comes, and
        ConnectionAbortedError when the master is gone already.
        """
        channel = Channel(socket.socket(fileno=fd))
        setup = Setup.from_message(channel.receive_control(timeout))
        _die_with_parent()
        if os.getppid() != setup.master_pid:  # it died before the line above took effect
            raise ConnectionAbortedError("the master is gone")
        return cls(channel, setup)

    @property
    def config(self) -> Config:
        """The master's config, with this worker's node id and share of the node cap."""
        return parse_config(self.setup.config, source="the master's setup")

    @property
    def config_path(self) -> Path | None:
        """The file a SIGHUP reloads (the master's)."""
        return None if self.setup.config_path is None else Path(self.setup.config_path)

    @property
    def admin_path(self) -> str:
        """The Unix socket this worker's admin listener serves, for the master."""
        return admin_socket_path(self.setup.run_dir, self.index)

    def listening(self) -> socket.socket:
        """A Unix socket for the front to serve, which nobody can connect to.

        websockets answers a handshake only on a server that serves, so the
        front's server listens; bound, then unlinked, the socket is
        reachable by no one: every connection comes from the master.
        """
        path = Path(self.setup.run_dir) / f"worker-{self.index}.idle"
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(str(path))
        path.unlink()
        sock.listen(1)
        return sock

    def serve(
        self, adopt: Callable[[socket.socket, bytes, str], None], on_gone: Callable[[], None]
    ) -> None:
        """Loop: give every hand-off to ``adopt``; ``on_gone`` once the master is gone."""

        def handed(user_id: str, prefix: bytes, sock: socket.socket) -> None:
            adopt(sock, prefix, user_id)

        self.channel.receive(handed, lambda _: None, on_gone)

    def ready(self) -> None:
        """Loop: tell the master this worker serves."""
        self.channel.send_control({"ready": os.getpid()})


def _die_with_parent() -> None:
    """Ask the kernel for SIGTERM when the parent (the master) dies: the worker drains."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
