"""A master, a replica and three sentinels on loopback: the Sentinel tests and ``bench --redis``.

The tests (``tests/cluster/sentinels.py``) and the scripts import it as ``_sentinels``:
scripts/ is on ``sys.path`` when a script runs, and pytest puts it there too.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import redis
from _toolkit import HOST, free_ports, redis_server_binary, tail_file
from redis.backoff import NoBackoff
from redis.retry import Retry

__all__ = ["MASTER_NAME", "Relay", "SentinelSet", "running_sentinels"]

# Debian's ``redis-server`` is all it takes: ``redis-server FILE --sentinel`` is
# what the ``redis-sentinel`` package's command runs (that package only adds
# the link and a systemd unit). Each process gets its own config file in a
# temporary directory, since a sentinel rewrites its file (it refuses to start
# without one). The sentinels are told to look often (``SENTINEL DEBUG``, Redis
# 7: INFO and ask every 100 ms, and no TILT mode for a timer late by less than
# 30 s on a busy machine): a SIGKILLed master is replaced in about 1.5 s.
#
#     with running_sentinels() as cluster:
#         cluster.url               # redis+sentinel://127.0.0.1:P1,...:P3/mymaster/0
#         cluster.kill_master()     # SIGKILL; seconds until the sentinels name the replica
#
# With ``relay=True`` the replica replicates through :class:`Relay`, which can
# hold back what the master sends (``relay.frozen.set()``): writes acknowledged
# by the master then die with it, as over a partition or a lagging link.

MASTER_NAME = "mymaster"


def _client(port: int, timeout: float = 0.5) -> redis.Redis:
    """A client that asks once: a poll's next turn is the retry (redis-py's own take seconds)."""
    return redis.Redis(
        host=HOST,
        port=port,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
    )


def _answers(port: int) -> bool:
    client = _client(port, 0.2)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


_VIEW = ("ip", "port", "flags", "num-slaves", "num-other-sentinels", "quorum")


def _wait(predicate: Callable[[], bool], timeout: float, what: str) -> float:
    """Poll until true; the seconds it took (AssertionError after ``timeout``)."""
    started = time.monotonic()
    while True:
        with contextlib.suppress(redis.RedisError):
            if predicate():
                return time.monotonic() - started
        if time.monotonic() - started > timeout:
            raise AssertionError(f"not within {timeout:g}s: {what}")
        time.sleep(0.02)


class Relay:
    """A TCP relay between the replica and its master; frozen, it holds back the master's bytes.

    Without it, bytes written to a loopback socket reach the replica even
    after the master is SIGKILLed, so a kill never loses a write. What it
    held back when the master dies is lost.
    """

    def __init__(self, target: int) -> None:
        self.target = target
        self.frozen = threading.Event()
        self._listener = socket.create_server((HOST, 0))
        self._listener.settimeout(0.2)
        self.port: int = self._listener.getsockname()[1]
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._accept, name="relay", daemon=True)]
        self._threads[0].start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                down, _ = self._listener.accept()
            except OSError:
                continue
            try:
                up = socket.create_connection((HOST, self.target), timeout=1)
            except OSError:
                down.close()
                continue
            up.settimeout(None)
            down.settimeout(None)
            for source, sink, from_master in ((down, up, False), (up, down, True)):
                thread = threading.Thread(
                    target=self._pipe, args=(source, sink, from_master), daemon=True
                )
                thread.start()
                self._threads.append(thread)

    def _pipe(self, source: socket.socket, sink: socket.socket, from_master: bool) -> None:
        held: list[bytes] = []
        try:
            while chunk := source.recv(65536):
                if from_master and self.frozen.is_set():
                    held.append(chunk)
                    continue
                for piece in held:
                    sink.sendall(piece)
                held.clear()
                sink.sendall(chunk)
        except OSError:
            pass
        finally:  # the master died, or the relay closes: what was held back is lost
            for end in (source, sink):
                with contextlib.suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)
                end.close()

    def close(self) -> None:
        self._stop.set()
        self._listener.close()
        for thread in self._threads:
            thread.join(2)


class SentinelSet:
    """A master, one replica and three sentinels (quorum 2), each a process of its own.

    ``launcher`` goes before each command (the benchmark's ``--exec``, so
    that the servers die with it). ``fast`` (the default) makes the
    sentinels look every 100 ms; without it they keep Redis's own periods
    (INFO every 10 s), as in a deployment.
    """

    def __init__(
        self,
        *,
        down_after_ms: int = 500,
        failover_timeout_ms: int = 2000,
        relay: bool = False,
        launcher: Sequence[str] = (),
        fast: bool = True,
    ) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="ws-sentinels-"))
        self.master_port, self.replica_port, *self.sentinel_ports = free_ports(5)
        self.down_after_ms, self.failover_timeout_ms = down_after_ms, failover_timeout_ms
        self.launcher = list(launcher)
        self.fast = fast
        self.use_relay = relay
        self.relay: Relay | None = None
        self.procs: dict[int, subprocess.Popen[bytes]] = {}

    @property
    def url(self) -> str:
        """The ``[redis] url`` of a node on this set."""
        hosts = ",".join(f"{HOST}:{port}" for port in self.sentinel_ports)
        return f"redis+sentinel://{hosts}/{MASTER_NAME}/0"

    # --- processes ---------------------------------------------------------------------

    def _spawn(self, port: int, lines: list[str], *extra: str) -> None:
        config = self.dir / f"{port}.conf"
        config.write_text("\n".join(lines) + "\n")
        command = [*self.launcher, redis_server_binary(), str(config), *extra]
        proc = self.procs[port] = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )

        def up() -> bool:  # a port taken meanwhile: the process exits, another server answers
            if proc.poll() is not None:
                raise AssertionError(f"redis-server on {port} exited {proc.returncode}")
            return _answers(port)

        _wait(up, 10, f"redis-server on {port}")

    def _start_server(self, port: int, replica_of: int | None) -> None:
        lines = [
            f"port {port}", f"bind {HOST}", 'save ""', "appendonly no", f"dir {self.dir}",
            f"dbfilename dump-{port}.rdb", f"logfile {self.dir}/redis-{port}.log",
            "repl-diskless-sync yes", "repl-diskless-sync-delay 0",
        ]  # fmt: skip
        if replica_of is not None:
            lines.append(f"replicaof {HOST} {replica_of}")
        self._spawn(port, lines)

    def _start_sentinel(self, port: int) -> None:
        self._spawn(
            port,
            [
                f"port {port}", f"bind {HOST}", f"dir {self.dir}",
                f"logfile {self.dir}/sentinel-{port}.log", "sentinel resolve-hostnames no",
                f"sentinel monitor {MASTER_NAME} {HOST} {self.master_port} 2",
                f"sentinel down-after-milliseconds {MASTER_NAME} {self.down_after_ms}",
                f"sentinel failover-timeout {MASTER_NAME} {self.failover_timeout_ms}",
                f"sentinel parallel-syncs {MASTER_NAME} 1",
            ],
            "--sentinel",
        )  # fmt: skip
        if not self.fast:
            return
        client = _client(port)
        command: Any = client.execute_command  # untyped in redis-py
        # Redis >= 7: look often, and never enter TILT on a busy test machine. The ping period
        # stays 1 s: a replica is promoted only if its last INFO is younger than five ping
        # periods, and while the master is down the sentinels ask the replicas once a second.
        try:
            command(
                "SENTINEL", "DEBUG", "info-period", 100, "ask-period", 100,
                "publish-period", 200, "tilt-trigger", 30000, "min-link-reconnect-period", 200,
            )  # fmt: skip
        finally:
            client.close()

    def start(self) -> SentinelSet:
        """Start everything; return once every sentinel knows the replica and the others."""
        try:
            self._start_server(self.master_port, None)
            if self.use_relay:
                self.relay = Relay(self.master_port)
            upstream = self.relay.port if self.relay is not None else self.master_port
            self._start_server(self.replica_port, upstream)
            _wait(self._replica_linked, 15, "the replica's link to the master")
            for port in self.sentinel_ports:
                self._start_sentinel(port)
            try:
                _wait(self._agreed, 30, "the sentinels agree on the master and its replica")
            except AssertionError as exc:
                raise AssertionError(f"{exc}\n{self.views()}") from None
        except BaseException:
            self.cleanup()
            raise
        return self

    def views(self) -> str:
        """What each process says of itself and each sentinel of the master, with log tails."""
        lines = []
        for port, proc in self.procs.items():
            state = "running" if proc.poll() is None else f"exited {proc.returncode}"
            lines.append(f"process on {port}: {state}")
        for port in self.sentinel_ports:
            client = _client(port)
            try:
                master: Any = client.sentinel_master(MASTER_NAME)
                seen = {key: master.get(key) for key in _VIEW}
                lines.append(f"sentinel {port}: {seen}")
            except redis.RedisError as exc:
                lines.append(f"sentinel {port}: {exc!r}")
            finally:
                client.close()
            lines.append(tail_file(self.dir / f"sentinel-{port}.log", 8))
        return "\n".join(lines)

    def _replica_linked(self) -> bool:
        client = _client(self.replica_port)
        try:
            return client.info("replication").get("master_link_status") == "up"
        finally:
            client.close()

    def _agreed(self) -> bool:
        for port in self.sentinel_ports:
            client = _client(port)
            try:
                master: Any = client.sentinel_master(MASTER_NAME)
            finally:
                client.close()
            if (
                master["num-slaves"] < 1
                or master["num-other-sentinels"] < 2
                or master["port"] != self.master_port
            ):
                return False
        return True

    def stop(self) -> None:
        """SIGKILL every process of the set."""
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait(5)

    def cleanup(self) -> None:
        """Stop everything and remove the files."""
        self.stop()
        if self.relay is not None:
            self.relay.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    # --- the master and its failover ------------------------------------------------------

    def named_master(self) -> int:
        """The master's port, as most sentinels name it (0: none answers)."""
        votes: dict[int, int] = {}
        for port in self.sentinel_ports:
            client = _client(port, 0.2)
            with contextlib.suppress(redis.RedisError):
                address: Any = client.sentinel_get_master_addr_by_name(MASTER_NAME)
                if address:
                    votes[int(address[1])] = votes.get(int(address[1]), 0) + 1
            client.close()
        return max(votes, key=lambda port: votes[port]) if votes else 0

    def master_client(self) -> redis.Redis:
        """A plain client of the current master."""
        return _client(self.named_master(), 2.0)

    def kill_master(self, timeout: float = 30.0) -> dict[str, float]:
        """SIGKILL the master: seconds until the replica takes writes and the sentinels name it."""
        old = self.named_master()
        new = self.replica_port if old == self.master_port else self.master_port
        started = time.monotonic()
        self.procs[old].send_signal(signal.SIGKILL)
        self.procs[old].wait(5)
        seen: dict[str, float] = {}

        def named() -> int:
            count = 0
            for port in self.sentinel_ports:
                client = _client(port, 0.2)
                with contextlib.suppress(redis.RedisError):
                    named_now: Any = client.sentinel_get_master_addr_by_name(MASTER_NAME)
                    count += bool(named_now) and int(named_now[1]) == new
                client.close()
            return count

        def writable() -> bool:
            client = _client(new, 0.2)
            command: Any = client.execute_command
            try:
                role = command("ROLE")[0]
                return role in (b"master", "master") and bool(client.set("wss-probe", "1"))
            except redis.RedisError:
                return False
            finally:
                client.close()

        while time.monotonic() - started < timeout:
            count, now = named(), time.monotonic() - started
            if count >= 1:
                seen.setdefault("first_sentinel", now)
            if count == 3:
                seen.setdefault("all_sentinels", now)
            if writable():
                seen.setdefault("new_master_writable", now)
            if len(seen) == 3:
                return seen
            time.sleep(0.01)
        raise AssertionError(f"no failover within {timeout:g}s: {seen}\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        """The last lines of the first sentinel's log (why a failover did not happen)."""
        return tail_file(self.dir / f"sentinel-{self.sentinel_ports[0]}.log", lines)


@contextlib.contextmanager
def running_sentinels(*, relay: bool = False) -> Iterator[SentinelSet]:
    """A started set for the block; every process killed and its files removed after.

    A set that does not start is started once more, on new ports, with a
    warning that says why (the tests are of the failover, not of Redis's start).
    """
    try:
        sentinels = SentinelSet(relay=relay).start()
    except AssertionError as exc:
        warnings.warn(f"a Sentinel set did not start, started again: {exc}", stacklevel=2)
        sentinels = SentinelSet(relay=relay).start()
    try:
        yield sentinels
    finally:
        sentinels.cleanup()
