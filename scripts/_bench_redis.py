"""``scripts/bench --redis``: the daemon on the Redis ledger, and on a Sentinel set.

:class:`RedisTargets` is the bench's own redis-server and Sentinel set;
each round, :func:`redis_round` churns on the lone redis-server
(:func:`bench_redis`, counting the daemon's commands in its slow log with
:class:`RedisCalls`), then on the Sentinel set's master by a plain URL and
through the sentinels, side by side (:func:`sentinel_pair`); after the
rounds, :func:`cluster_extras` measures pushes across two nodes and what
``WAIT`` would cost (``scripts/_cluster_bench.py``). The tables and
verdicts of these runs are in ``scripts/_bench_report.py``.
"""

from __future__ import annotations

import hashlib
import re
import sys
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from _bench_procs import (  # scripts/ is on sys.path when run as a script
    ENTRY,
    Children,
    Server,
    cpu_seconds,
    start_server,
)
from _bench_report import fmt
from _bench_scenarios import (
    MASTER_KIND,
    REDIS_KIND,
    SENTINEL_KIND,
    SLICES,
    Settings,
    churn_metrics,
    combined,
    interleaved,
    run_scenario,
)
from _cluster_bench import push_latency, wait_cost
from _sentinels import SentinelSet
from _toolkit import HOST, RedisServer

__all__ = [
    "RedisCalls",
    "RedisTargets",
    "bench_redis",
    "cluster_extras",
    "redis_env",
    "redis_round",
    "sentinel_pair",
    "start_redis",
    "start_redis_node",
]

_BENCH_CLIENT = "ws-bench"
_SLOWLOG_MAX = 500_000
_CALLED = re.compile(r"redis\.call\('(\w+)'")


def start_redis(logdir: Path) -> RedisServer:
    """A redis-server of the bench's own on a free loopback port (it dies with the bench)."""
    launcher = [sys.executable, str(ENTRY), "--exec"]
    server = RedisServer(launcher=launcher).start()
    client = _redis_client(server)
    try:
        # every command enters the slow log (a few us each): EVALSHAs are told apart by script
        client.config_set("slowlog-log-slower-than", 0)
        client.config_set("slowlog-max-len", _SLOWLOG_MAX)
        (logdir / "redis.version").write_text(str(client.info("server")["redis_version"]))
    finally:
        client.close()
    return server


def _redis_client(server: RedisServer) -> Any:
    client = server.client()
    client.client_setname(_BENCH_CLIENT)
    return client


class RedisCalls:
    """What the daemon asked of Redis between :meth:`start` and :meth:`per_connection`."""

    def __init__(self, server: RedisServer) -> None:
        from supervisor.cluster import scripts as redis_scripts  # noqa: PLC0415  (the venv's)

        self.server = server
        texts = redis_scripts.BY_NAME
        self.scripts = {hashlib.sha1(t.encode()).hexdigest(): n for n, t in texts.items()}
        # the slow log lists the commands a script calls too: those are no round trips
        self.inner = {found.upper() for text in texts.values() for found in _CALLED.findall(text)}
        self.cpu = 0.0

    def start(self) -> None:
        client = _redis_client(self.server)
        try:
            client.slowlog_reset()
        finally:
            client.close()
        self.cpu = cpu_seconds(self.server.pid or 0)

    def per_connection(self, connections: int) -> dict[str, float]:
        """Commands per connection: each script, all of them, and redis-server CPU."""
        cpu = cpu_seconds(self.server.pid or 0) - self.cpu
        client = _redis_client(self.server)
        try:
            entries = client.slowlog_get(_SLOWLOG_MAX)
            client.slowlog_reset()
        finally:
            client.close()
        counts: Counter[str] = Counter()
        for entry in entries:
            if entry.get("client_name", b"") in (_BENCH_CLIENT, _BENCH_CLIENT.encode()):
                continue
            command = entry["command"]
            args = (
                command.decode(errors="replace") if isinstance(command, bytes) else command
            ).split()
            name = args[0].upper() if args else "?"
            if name == "EVALSHA" and len(args) > 1:
                name = self.scripts.get(args[1], "EVALSHA")
            if name not in self.inner:
                counts[name] += 1
        per = max(1, connections)
        return {
            "redis_acquire_per_conn": counts["ACQUIRE"] / per,
            "redis_release_per_conn": counts["RELEASE"] / per,
            "redis_requests_per_conn": sum(counts.values()) / per,
            "redis_cpu_ms_per_conn": cpu / per * 1000,
            "redis_log_full": float(len(entries) >= _SLOWLOG_MAX),
            **{f"redis_calls_{name.lower()}": float(n) for name, n in sorted(counts.items())},
        }


def redis_env(url: str, node_id: str = "") -> dict[str, str]:
    """The overrides of a supervised server on the Redis ledger at ``url``."""
    env = {"WS_SUPERVISOR_QUOTA_BACKEND": "redis", "WS_SUPERVISOR_REDIS_URL": url}
    return {**env, "WS_SUPERVISOR_SERVER_NODE_ID": node_id} if node_id else env


def start_redis_node(
    kind: str, children: Children, settings: Settings, logdir: Path, url: str, *, node_id: str = ""
) -> Server:
    """A supervised server on the Redis ledger at ``url`` (started; not waited for)."""
    return start_server(
        kind,
        children,
        settings.compression,
        logdir,
        overrides=redis_env(url, node_id),
        log_level=settings.log_level,
    )


def bench_redis(
    children: Children, settings: Settings, logdir: Path, redis_server: RedisServer
) -> tuple[dict[str, float], dict[str, list[float]]]:
    """ws-supervisor with the Redis ledger, churn only: (metrics, latency samples)."""
    server = start_redis_node(REDIS_KIND, children, settings, logdir, redis_server.url)
    calls = RedisCalls(redis_server)
    try:
        server.wait_ready()
        run_scenario(
            children, server, settings, "churn", concurrency=10, duration=settings.warmup_seconds
        )
        server.quiesce()
        calls.start()
        metrics, latencies = churn_metrics(children, server, settings)
        metrics.update(calls.per_connection(int(metrics["churn_conns"])))
    finally:
        server.stop()
    return metrics, {"connect_ms": [value * 1000 for value in latencies]}


def sentinel_pair(
    children: Children, settings: Settings, logdir: Path, sentinels: SentinelSet
) -> dict[str, tuple[dict[str, float], list[float]]]:
    """The Sentinel set's master by a plain URL and through the sentinels, churned in slices.

    Two nodes, both running throughout, each on its own URL; the round's
    ``churn_seconds`` of churn per node goes in :data:`SLICES` slices,
    alternating ABBA. Returns each kind's combined (metrics, latencies).
    """
    urls = {
        MASTER_KIND: f"redis://{HOST}:{sentinels.named_master()}/0",
        SENTINEL_KIND: sentinels.url,
    }
    servers: dict[str, Server] = {}
    sliced = replace(settings, churn_seconds=settings.churn_seconds / SLICES)
    parts: dict[str, list[tuple[dict[str, float], list[float]]]] = {}
    try:
        for kind, url in urls.items():
            servers[kind] = start_redis_node(kind, children, settings, logdir, url)
        for server in servers.values():
            server.wait_ready()
            run_scenario(
                children,
                server,
                settings,
                "churn",
                concurrency=10,
                duration=settings.warmup_seconds,
            )
            server.quiesce()
        parts = interleaved(list(urls), lambda kind: churn_metrics(children, servers[kind], sliced))
    finally:
        for server in servers.values():
            server.stop()
    return {kind: combined(found) for kind, found in parts.items()}


def redis_round(
    children: Children,
    settings: Settings,
    logdir: Path,
    redis_server: RedisServer,
    *,
    per_round: dict[str, list[dict[str, float]]],
    samples: dict[str, dict[str, list[float]]],
    sentinels: SentinelSet | None = None,
) -> None:
    """One round of the Redis-backed runs, after the others.

    A lone redis-server; then, with ``sentinels``, its master by a plain URL
    and through the sentinels, side by side (:func:`sentinel_pair`).
    """
    number = len(per_round[REDIS_KIND])
    print(f"== round {number + 1}: {REDIS_KIND} (churn)", file=sys.stderr)
    found = {REDIS_KIND: bench_redis(children, settings, logdir, redis_server)}
    if sentinels is not None:
        print(f"== round {number + 1}: {MASTER_KIND} and {SENTINEL_KIND}", file=sys.stderr)
        for kind, (metrics, latencies) in sentinel_pair(
            children, settings, logdir, sentinels
        ).items():
            found[kind] = (metrics, {"connect_ms": [value * 1000 for value in latencies]})
    for kind, (metrics, values) in found.items():
        per_round[kind].append(metrics)
        for key, kept in values.items():
            samples[kind].setdefault(key, []).extend(kept)
        print(
            f"   {kind}: " + ", ".join(f"{k}={fmt(v)}" for k, v in metrics.items()),
            file=sys.stderr,
        )


def cluster_extras(
    children: Children,
    settings: Settings,
    logdir: Path,
    redis_server: RedisServer,
    sentinels: SentinelSet,
) -> dict[str, float]:
    """After the rounds: pushes across two nodes, and the cost of WAIT on the Sentinel master."""
    from supervisor.cluster import scripts  # noqa: PLC0415  (the venv has the project)

    def start_node(node_id: str) -> Server:
        server = start_redis_node(
            node_id, children, settings, logdir, redis_server.url, node_id=node_id
        )
        server.wait_ready()
        return server

    samples = 100 if settings.rounds == 1 else 500
    print(f"== pushes: local and cross-node, {samples} each", file=sys.stderr)
    found = push_latency(start_node, redis_server.port, samples)
    print(f"== WAIT 1 after each admission, {samples * 4} pairs", file=sys.stderr)
    found.update(wait_cost(sentinels.named_master(), scripts.ACQUIRE, scripts.RELEASE, samples * 4))
    return found


@dataclass
class RedisTargets:
    """The Redis of ``--redis``: a plain redis-server and a Sentinel set, both the bench's own."""

    server: RedisServer
    sentinels: SentinelSet

    @classmethod
    def start(cls, logdir: Path) -> RedisTargets:
        server = start_redis(logdir)
        try:
            launcher = [sys.executable, str(ENTRY), "--exec"]
            return cls(server, SentinelSet(launcher=launcher, fast=False).start())
        except BaseException:
            server.stop()
            raise

    def stop(self) -> None:
        self.server.stop()
        self.sentinels.cleanup()
