"""The daemon's lifecycle: startup, main loop, ordered shutdown, and its signals.

Everything here runs on the event loop, except the blocking calls into the
tree, which run on daemon threads (:func:`off_loop`) so that a forced exit
never waits for them. What each signal asks of it (the CLI captures
them, :func:`supervisor.cli.capture_signals`):

- SIGTERM, SIGINT: drain (:meth:`Daemon.request_stop`: stop accepting,
  close every connection with 1001, stop every actor); a second SIGINT
  forces the exit (:meth:`Daemon.force_exit`);
- SIGHUP: reload quota, thresholds and timeouts from the config file;
- SIGUSR1: write the state dump and every thread's stack to the log
  (:meth:`Daemon.dump`).

A worker of ``serve --workers N`` is a daemon too, given its
:class:`~supervisor.workers.seat.WorkerSeat`: its front serves the
connections the master hands over, its admin listener a Unix socket the
master reads, and it drains when the master asks (SIGTERM) or is gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import os
import secrets
import socket
import sys
import threading
import traceback
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TypeVar

import attrs

from actors.clock import SystemClock
from actors.errors import TreeNotRunning
from actors.messages import TakeBack
from actors.ports import Handler
from actors.tree import SupervisionTree
from supervisor.admin.backend import TreeAdminBackend
from supervisor.admin.fanout import FanoutObserver
from supervisor.admin.listener import AdminServer
from supervisor.admin.metrics import MetricsObserver
from supervisor.admin.origin import is_loopback_host
from supervisor.admin.readiness import Readiness
from supervisor.cluster.ledger import RedisLedger, connect
from supervisor.cluster.link import ClusterLink
from supervisor.cluster.push import ClusterPush
from supervisor.cluster.push_tally import PushAnswer
from supervisor.config.load import config_to_dict, load_config
from supervisor.config.schema import Config
from supervisor.errors import ConfigError, ConfigIssue, ForcedExit
from supervisor.front.apps import load_app
from supervisor.front.auth import Authenticator
from supervisor.front.bridge import off_loop, run_on_loop
from supervisor.front.server import WebSocketFront
from supervisor.workers.seat import WorkerSeat

__all__ = [
    "Daemon",
    "Environment",
    "environment_issues",
    "read_environment",
    "restart_only_changes",
]

log = logging.getLogger(__name__)

T = TypeVar("T")


def _admin_token(config: Config, env: Mapping[str, str]) -> str | None:
    """The admin bearer token; None only when none is asked for, on loopback.

    The listener fails closed: a ``token_env`` naming a variable that is
    unset or empty is an error (an operator who asked for a token never gets
    a listener without one), and so is no token off loopback.
    """
    name = config.admin.token_env
    if name:
        token = env.get(name, "")
        if not token.strip():
            state = "is empty" if name in env else "is not set"
            message = f"environment variable {name} {state}: the admin token it names is required"
            raise ConfigError([ConfigIssue("admin.token_env", message)])
        return token
    if not is_loopback_host(config.admin.host):
        issue = ConfigIssue("admin.token_env", "an admin listener off loopback needs a token")
        raise ConfigError([issue])
    return None


@attrs.frozen
class Environment:
    """What ``serve`` takes from the environment for a config: its secrets and its app."""

    authenticator: Authenticator
    admin_token: str | None
    app: Callable[[], Handler]


def read_environment(config: Config, env: Mapping[str, str]) -> Environment:
    """The secrets (JWT secret or key, admin token) and the app ``config`` names.

    Raises :class:`ConfigError` listing every problem: what ``serve`` would
    refuse beyond the file's own checks.
    """
    issues: list[ConfigIssue] = []

    def attempt(build: Callable[[], T]) -> T | None:
        try:
            return build()
        except ConfigError as error:
            issues.extend(error.issues)
            return None

    authenticator = attempt(lambda: Authenticator.from_config(config.auth, config.profile, env))
    token = attempt(lambda: _admin_token(config, env))
    app = attempt(lambda: load_app(config.server.app))
    if issues or authenticator is None or app is None:
        raise ConfigError(issues, "environment")
    return Environment(authenticator, token, app)


def environment_issues(config: Config, env: Mapping[str, str]) -> list[ConfigIssue]:
    """What :func:`read_environment` finds wrong; [] when ``serve`` would start."""
    try:
        read_environment(config, env)
    except ConfigError as error:
        return list(error.issues)
    return []


class Daemon:
    """One ws-supervisor node: the tree, the WebSocket front and the admin listener."""

    def __init__(
        self,
        config: Config,
        *,
        config_path: Path | None = None,
        env: Mapping[str, str] = os.environ,
        seat: WorkerSeat | None = None,
    ) -> None:
        environment = read_environment(config, env)
        self.config = config
        self.config_path = config_path
        self.seat = seat
        self.node_id = config.server.node_id or (
            f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
        )
        self.metrics = MetricsObserver()
        self.readiness = Readiness(SystemClock())
        self.shared_ledger: RedisLedger | None = None
        self.cluster: ClusterLink | None = None
        client = connect(config.redis) if config.quota.backend == "redis" else None
        if client is not None:
            self.shared_ledger = RedisLedger(
                client, self.node_id, config.redis, config.quota.node_max_managers, self.metrics
            )
        observers = FanoutObserver(self.metrics, self.readiness)  # the tree's and the front's
        self.tree = SupervisionTree(
            config,
            observer=observers,
            handler_factory=environment.app,
            node_id=self.node_id,
            ledger=self.shared_ledger,
        )
        pushes = None
        if client is not None and self.shared_ledger is not None:
            deliver = functools.partial(self.tree.push_nowait, here=True)  # on the listener
            pushes = ClusterPush(self.shared_ledger, client, deliver)
            self.cluster = ClusterLink(self.shared_ledger, client, self._take_back, pushes)
        self.front = WebSocketFront(
            config, self.tree, environment.authenticator, observer=observers
        )
        self.backend = TreeAdminBackend(
            self.tree,
            self.metrics,
            self.readiness,
            shared_ledger=self.shared_ledger,
            clients=self.front.clients,
            pushes=pushes,
        )
        self.metrics.watch_readiness(lambda: {trigger.id for trigger in self.backend.triggers()})
        self.admin = AdminServer(
            config.admin.host,
            config.admin.port,
            self.backend,
            environment.admin_token if seat is None else None,  # the master's socket is private
            path=None if seat is None else seat.admin_path,
        )
        self._stopping: asyncio.Event | None = None
        self._forced: asyncio.Event | None = None

    # --- lifecycle ---------------------------------------------------------------------

    async def serve(self, on_ready: Callable[[Daemon], None] | None = None) -> None:
        """Start, run until asked to stop, then drain; raises :class:`ForcedExit`."""
        self._stopping = asyncio.Event()
        self._forced = asyncio.Event()
        try:
            await self.startup()  # a failure here still stops what did start
            if on_ready is not None:
                on_ready(self)
            await self._stopping.wait()
        finally:
            await self.shutdown()

    async def startup(self) -> None:
        """Start the tree (off the loop), then the listeners."""
        await off_loop(self.tree.start)
        if self.cluster is not None:  # its channel is read on this loop
            on_loop = functools.partial(run_on_loop, asyncio.get_running_loop())
            await off_loop(functools.partial(self.cluster.start, on_loop))
        seat = self.seat
        await self.front.start(None if seat is None else seat.listening())
        await self.admin.start()
        if self.config.faults.close_under_foreign_id:
            log.warning("test-only fault on: faults.close_under_foreign_id (thread_id mismatches)")
        if seat is not None:
            seat.serve(self.front.adopt, self.request_stop)  # the master gone: drain
            seat.ready()
            log.info("ws-supervisor worker %d node %s serving", seat.index, self.node_id)
            return
        log.info(
            "ws-supervisor node %s serving ws://%s:%d%s admin http://%s:%d profile=%s",
            self.node_id,
            self.config.server.host,
            self.front.port,
            self.config.server.path,
            self.config.admin.host,
            self.admin.port,
            self.config.profile,
        )

    async def shutdown(self) -> None:
        """Ordered: not ready, stop accepting, close all (1001) and stop actors, close admin."""
        assert self._forced is not None
        self.readiness.set_draining(True)
        self.front.stop_accepting()
        drain = asyncio.ensure_future(self._drain())
        forced = asyncio.ensure_future(self._forced.wait())
        await asyncio.wait([drain, forced], return_when=asyncio.FIRST_COMPLETED)
        forced.cancel()
        if not drain.done():
            drain.cancel()
            self.front.abort()
            await self.admin.close()
            raise ForcedExit
        await self.admin.close()
        log.info("ws-supervisor node %s stopped", self.node_id)

    async def _drain(self) -> None:
        await off_loop(self.tree.stop)  # frees every slot, in Redis too
        if self.cluster is not None:
            await off_loop(self.cluster.stop)
        if not await self.front.wait_closed(self.config.server.drain_timeout):
            log.warning("connections still open after the drain timeout: aborting them")
            self.front.abort()

    async def push(self, user_id: str, thread_id: str | None, message: object) -> PushAnswer:
        """Loop: send ``message`` (JSON data) to the user's, or the thread's, connections.

        On every node, through Redis, when the quota is on Redis; what it
        reached, as ``POST /v1/push`` answers it. Raises
        :class:`~actors.errors.InvalidIdError` for a bad id and
        :class:`~supervisor.errors.BackendUnavailable` when the tree is
        stopped or does not answer.
        """
        return await self.backend.push(user_id, thread_id, message)

    def _take_back(self, takeback: TakeBack) -> None:
        """Cluster link's threads: close a connection whose slot went to another node."""
        self.metrics.take_back(takeback.reason)
        with contextlib.suppress(TreeNotRunning):
            self.tree.take_back(
                takeback.user_id, takeback.websocket_id, takeback.reason, takeback.why
            )

    # --- what signals ask (supervisor.cli.capture_signals) -----------------------------------

    def request_stop(self) -> None:
        """Loop: begin the drain (idempotent)."""
        if self._stopping is not None:
            self._stopping.set()

    def force_exit(self) -> None:
        """Loop: stop waiting for the drain; :meth:`serve` raises ``ForcedExit``."""
        if self._forced is not None:
            log.warning("second SIGINT: forcing exit")
            self._forced.set()

    async def reload(self) -> bool:
        """Re-read the config file and apply what can change live; False if rejected."""
        if self.config_path is None:
            log.warning("reload: no config file to read (started from defaults)")
            return False
        path = self.config_path
        try:
            new = await off_loop(lambda: load_config(path))
        except ConfigError as error:
            log.error("reload rejected, keeping the running config: %s", error)
            return False
        live = self.config.reloaded(new)
        waiting = restart_only_changes(live, new)
        if waiting:
            log.warning("reload: %s apply at the next restart", ", ".join(waiting))
        self.tree.reconfigure(live)
        self.config = live
        log.info("reload applied: max_managers_per_user=%d", live.quota.max_managers_per_user)
        return True

    async def dump(self) -> None:
        """Write the tree's state and every thread's stack to the log."""
        state = await off_loop(self.tree.snapshot)
        log.warning("state dump: %s", json.dumps(state))
        names = {thread.ident: thread.name for thread in threading.enumerate()}
        for ident, frame in sys._current_frames().items():
            stack = "".join(traceback.format_stack(frame))
            log.warning("thread %s (%s):\n%s", names.get(ident, "?"), ident, stack)


def restart_only_changes(applied: Config, reloaded: Config) -> list[str]:
    """The key paths (``section.key``) that ``reloaded`` changes but a reload left as they were.

    ``applied`` is what the reload put in place.
    """
    now, wanted = _flat(config_to_dict(applied)), _flat(config_to_dict(reloaded))
    return sorted(key for key in now.keys() | wanted.keys() if now.get(key) != wanted.get(key))


def _flat(tree: object, path: str = "") -> dict[str, object]:
    """``tree`` (nested dicts) as ``{"section.key": value}``."""
    if not isinstance(tree, dict):
        return {path: tree}
    flat: dict[str, object] = {}
    for key, value in tree.items():
        flat.update(_flat(value, f"{path}.{key}" if path else str(key)))
    return flat
