"""The master of ``serve --workers N``: one port, N worker daemons, one admin listener.

The master is the process the service manager sees: it binds the public
port and the admin port, takes every signal, restarts a worker that dies,
and exits with the daemon's status. Its parts, all on one event loop:

- the :class:`Acceptor` reads each request head and hands the connection
  to its user's worker (:class:`HandoffPolicy`): a user lives on one
  worker, so that worker's user supervisor is the one owner of the user's
  quota, exact as in one process, and nothing in the actors changes;
- the :class:`WorkerProcess` seats: worker ``i`` is a
  :class:`~supervisor.daemon.Daemon` with its own tree, serving the
  connections handed to it; each gets ``ceil(node_max_managers / N)`` of the
  node cap and its own node id;
- the :class:`AdminServer` of the daemon, answered from the workers'
  (:class:`WorkersBackend`).

A worker that dies is started again in its seat at once (its slots died
with it; with ``[quota] backend = "redis"`` the master frees its slots in
Redis at once too); while it starts, its users get 503 with
``Retry-After: 1``. More than :data:`RESTARTS` restarts of a seat within
:data:`RESTART_PERIOD` seconds stop the daemon (:class:`WorkerFailed`).

Signals: SIGTERM and SIGINT drain (stop accepting, not ready, SIGTERM to
every worker, each of which drains as one daemon does, then exit); a
second SIGINT kills the workers and raises :class:`ForcedExit`; SIGHUP
checks the file and then has every worker reload it; SIGUSR1 has every
worker write its dump to the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import secrets
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import attrs
import redis
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from actors.policies.restart import RestartIntensity
from supervisor.admin.listener import AdminServer
from supervisor.cluster.ledger import connect
from supervisor.cluster.upkeep import drop_node
from supervisor.config.load import config_to_dict, load_config
from supervisor.config.schema import Config
from supervisor.errors import ConfigError, ForcedExit, WorkerFailed
from supervisor.front.auth import Authenticator
from supervisor.workers.acceptor import Acceptor, listening_sockets
from supervisor.workers.gather import WorkersBackend
from supervisor.workers.process import WorkerProcess, describe_exit
from supervisor.workers.routing import HandoffPolicy
from supervisor.workers.seat import Setup

__all__ = ["RESTARTS", "RESTART_PERIOD", "Master", "worker_count"]

log = logging.getLogger(__name__)

RESTARTS = 5
"""Restarts of one seat allowed within :data:`RESTART_PERIOD` seconds."""

RESTART_PERIOD = 60.0
_STOP_MARGIN = 5.0  # seconds beyond a worker's own drain before it is killed


def worker_count(text: str) -> int:
    """``--workers``: a number >= 1, or ``auto`` (the cores this process may run on)."""
    if text == "auto":
        return len(os.sched_getaffinity(0))
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"--workers must be a number of processes (>= 1) or auto, not {text!r}")
    return int(text)


class Master:
    """``serve --workers N`` for ``workers`` >= 2 (one worker is the plain daemon)."""

    def __init__(
        self,
        config: Config,
        workers: int,
        *,
        authenticator: Authenticator,
        admin_token: str | None,
        config_path: Path | None = None,
        log_text: Callable[[str], None] | None = None,
        restarts: tuple[int, float] = (RESTARTS, RESTART_PERIOD),
    ) -> None:
        self.config = config
        self.config_path = config_path
        self.daemon_id = config.server.node_id or (
            f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
        )
        self.policy = HandoffPolicy(config, authenticator, workers, secrets.token_bytes(16))
        self.acceptor = Acceptor(config, self.policy, self._hand_off)
        self.run_dir = tempfile.mkdtemp(prefix="ws-supervisor-")
        write = log_text or _to_stderr
        self.seats = [
            WorkerProcess(
                index,
                run_dir=self.run_dir,
                daemon_id=self.daemon_id,
                refuse=self.acceptor.refuse_unavailable,
                log_text=write,
            )
            for index in range(workers)
        ]
        self.backend = WorkersBackend(
            self.seats,
            daemon_id=self.daemon_id,
            draining=lambda: self.draining,
            owner=self.policy.owner,
            own_metrics=self._own_metrics,
        )
        self.admin = AdminServer(config.admin.host, config.admin.port, self.backend, admin_token)
        self.draining = False
        self.failure: str | None = None
        self._intensity = [RestartIntensity(*restarts) for _ in self.seats]
        self._watchers: list[asyncio.Task[None]] = []
        self._freeing: set[asyncio.Task[None]] = set()
        self._stopping: asyncio.Event | None = None
        self._forced: asyncio.Event | None = None

    # --- lifecycle ---------------------------------------------------------------------

    async def serve(self, on_ready: Callable[[Master], None] | None = None) -> None:
        """Start, run until asked to stop, then drain.

        Raises :class:`ForcedExit` (a second SIGINT) or :class:`WorkerFailed`.
        """
        self._stopping = asyncio.Event()
        self._forced = asyncio.Event()
        try:
            await self.startup()
            if on_ready is not None:
                on_ready(self)
            await self._stopping.wait()
        finally:
            await self.shutdown()
        if self.failure is not None:
            raise WorkerFailed(self.failure)

    async def startup(self) -> None:
        """Bind the port, start every worker, then accept and answer the admin port."""
        server = self.config.server
        listeners = listening_sockets(server.host, server.port, self.config.limits.open_timeout)
        starts = [asyncio.ensure_future(seat.start(self._setup(seat))) for seat in self.seats]
        try:
            await asyncio.gather(*starts)
        except BaseException:
            for task in starts:
                task.cancel()
            await asyncio.gather(*starts, return_exceptions=True)
            for sock in listeners:
                sock.close()
            raise
        self._watchers = [asyncio.ensure_future(self._watch(seat)) for seat in self.seats]
        self.acceptor.start(listeners)
        await self.admin.start()
        log.info(
            "ws-supervisor %s serving ws://%s:%d%s with %d workers (pids %s) "
            "admin http://%s:%d profile=%s",
            self.daemon_id,
            server.host,
            self.acceptor.port,
            server.path,
            len(self.seats),
            ",".join(str(seat.pid) for seat in self.seats),
            self.config.admin.host,
            self.admin.port,
            self.config.profile,
        )

    async def shutdown(self) -> None:
        """Drain: not ready, stop accepting, every worker drains, then close the admin port."""
        assert self._forced is not None
        self.draining = True
        if self.acceptor.listeners:
            self.acceptor.close()
        for seat in self.seats:
            seat.signal(signal.SIGTERM)
        limit = (
            self.config.server.drain_timeout
            + self.config.cleanup.emergency_cleanup_timeout
            + _STOP_MARGIN
        )
        ended = asyncio.ensure_future(self._all_ended())
        forced = asyncio.ensure_future(self._forced.wait())
        await asyncio.wait([ended, forced], timeout=limit, return_when="FIRST_COMPLETED")
        forced.cancel()
        if not ended.done():
            if not self._forced.is_set():
                log.error("workers still running %gs after SIGTERM: killing them", limit)
            for seat in self.seats:
                seat.signal(signal.SIGKILL)
            await ended
        await self.admin.close()
        shutil.rmtree(self.run_dir, ignore_errors=True)
        if self._forced.is_set():
            raise ForcedExit
        if self._watchers:
            log.info("ws-supervisor %s stopped", self.daemon_id)

    async def _all_ended(self) -> None:
        for watcher in self._watchers:
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
        for seat in self.seats:
            if seat.process is not None and seat.process.returncode is None:
                await seat.wait()
            seat.gone()

    def _setup(self, seat: WorkerProcess) -> Setup:
        """What worker ``seat`` is told: the live config, its node id and share of the cap."""
        config = self.config
        share = math.ceil(config.quota.node_max_managers / len(self.seats))
        mine = attrs.evolve(
            config,
            server=attrs.evolve(config.server, node_id=seat.node_id),
            quota=attrs.evolve(config.quota, node_max_managers=share),
        )
        return Setup(
            index=seat.index,
            workers=len(self.seats),
            config=config_to_dict(mine),
            config_path=None if self.config_path is None else str(self.config_path),
            run_dir=self.run_dir,
            master_pid=os.getpid(),
        )

    async def _watch(self, seat: WorkerProcess) -> None:
        """Restart the worker of ``seat`` whenever it ends, until the daemon drains."""
        while True:
            code = await seat.wait()
            self.backend.worker_gone(seat.index)
            users, node_id = seat.users, seat.node_id
            seat.gone()
            if self.draining:
                return
            log.error(
                "worker %d (pid %s, node %s) ended: %s; starting it again",
                seat.index,
                seat.pid,
                node_id,
                describe_exit(code),
            )
            if self.config.quota.backend == "redis":
                freeing = asyncio.ensure_future(self._free_slots(node_id, users))
                self._freeing.add(freeing)
                freeing.add_done_callback(self._freeing.discard)
            intensity = self._intensity[seat.index]
            if not intensity.allow(time.monotonic()):
                self._fail(
                    f"worker {seat.index} ended more than {intensity.intensity} times in "
                    f"{intensity.period:g}s: stopping the daemon"
                )
                return
            seat.generation += 1
            seat.restarts += 1
            try:
                await seat.start(self._setup(seat))
            except WorkerFailed as error:
                self._fail(str(error))
                return
            log.info("worker %d back (pid %s, node %s)", seat.index, seat.pid, seat.node_id)

    async def _free_slots(self, node_id: str, users: set[str] | None) -> None:
        """Free, in Redis, every slot a dead worker held (off the loop)."""
        redis_config = self.config.redis

        def drop() -> int:
            client = connect(redis_config)
            try:
                return drop_node(client, redis_config, node_id, users)
            finally:
                client.close()

        try:
            freed = await asyncio.get_running_loop().run_in_executor(None, drop)
        except (redis.RedisError, OSError) as error:  # Redis down: the leases run out instead
            log.error(
                "could not free node %s's slots in redis (%s): they expire with their leases",
                node_id,
                error,
            )
            return
        log.info("freed %d slots of node %s in redis", freed, node_id)

    def _fail(self, why: str) -> None:
        log.error("%s", why)
        self.failure = why
        self.request_stop()

    def _hand_off(self, worker: int, user_id: str, prefix: bytes, conn: socket.socket) -> bool:
        return self.seats[worker].hand_off(user_id, prefix, conn)

    def _own_metrics(self) -> list[Metric]:
        up = GaugeMetricFamily("ws_supervisor_workers_up", "Worker processes serving.")
        up.add_metric([], sum(seat.serving for seat in self.seats))
        restarts = CounterMetricFamily(
            "ws_supervisor_worker_restarts", "Worker processes started again after they ended."
        )
        restarts.add_metric([], sum(seat.restarts for seat in self.seats))
        handoffs = CounterMetricFamily(
            "ws_supervisor_handoffs",
            "Connections the master accepted, by what it did with them.",
            labels=["result"],
        )
        for result in ("handed", "refused", "unavailable", "dropped"):
            handoffs.add_metric([result], self.acceptor.results[result])
        return [up, restarts, handoffs, *self.acceptor.answered_metrics()]

    # --- what signals ask (supervisor.cli.capture_signals) -----------------------------------

    def request_stop(self) -> None:
        """Loop: begin the drain (idempotent)."""
        if self._stopping is not None:
            self._stopping.set()

    def force_exit(self) -> None:
        """Loop: kill every worker; :meth:`serve` raises ``ForcedExit``."""
        if self._forced is not None:
            log.warning("second SIGINT: killing every worker")
            self._forced.set()

    async def dump(self) -> None:
        """Loop: have every worker write its dump to the log."""
        self._tell_workers(signal.SIGUSR1)

    def _tell_workers(self, signum: signal.Signals) -> None:
        for seat in self.seats:
            seat.signal(signum)

    async def reload(self) -> bool:
        """Check the file, then have every worker reload it; False if it is rejected."""
        if self.config_path is None:
            log.warning("reload: no config file to read (started from defaults)")
            return False
        path = self.config_path
        try:
            new = await asyncio.get_running_loop().run_in_executor(None, load_config, path)
        except ConfigError as error:
            log.error("reload rejected, keeping the running config: %s", error)
            return False
        self.config = self.config.reloaded(new)  # what a worker started later is given
        self._tell_workers(signal.SIGHUP)
        return True


def _to_stderr(text: str) -> None:
    sys.stderr.write(text + "\n")
