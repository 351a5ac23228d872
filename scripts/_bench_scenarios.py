"""``scripts/bench``'s scenarios, and one round of them with the servers side by side.

:class:`Settings` says how long and how big; :func:`run_scenario` runs one
scenario in client processes and probes the server before and after; the
timed scenarios go in :data:`SLICES` slices in ABBA order
(:func:`interleaved`), summed back into one run per server
(:func:`combined`, :func:`throughput_combined`); :func:`bench_round` is one
round of them all. A run's figures are kept by kind of server: ``bare``,
``supervised`` and the kinds below.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

from _bench_procs import (  # scripts/ is on sys.path when run as a script
    ENTRY,
    Children,
    ClientProc,
    Probe,
    Server,
    count_lines,
    cpu_seconds,
    start_server,
)
from _toolkit import percentile

__all__ = [
    "MASTER_KIND",
    "REDIS_KIND",
    "SENTINEL_KIND",
    "SHIPPED_LOG_LEVEL",
    "SLICES",
    "WORKERS_KIND",
    "Settings",
    "bench_round",
    "churn_metrics",
    "churn_slice",
    "combined",
    "interleaved",
    "memory_metrics",
    "rtt_slice",
    "run_scenario",
    "start_kind",
    "throughput_combined",
    "throughput_slice",
]

T = TypeVar("T")

SHIPPED_LOG_LEVEL = "INFO"
"""The ``[logging] level`` every profile ships (``config/*.toml``): the bench's default."""

WORKERS_KIND = "supervised_workers"
REDIS_KIND = "supervised_redis"
MASTER_KIND = "supervised_master"  # the Sentinel set's master, by a plain URL
SENTINEL_KIND = "supervised_sentinel"  # the same master, through the sentinels


@dataclass
class Settings:
    """Durations and sizes of one benchmark run."""

    rounds: int
    churn_seconds: float
    throughput_seconds: float
    rtt_samples: int
    idle_connections: int
    warmup_seconds: float
    client_procs: int
    compression: str
    app: str = ""
    log_level: str = SHIPPED_LOG_LEVEL
    workers: int = 1

    @classmethod
    def one_scenario(cls, seconds: float, compression: str, log_level: str) -> Settings:
        """One round of ``seconds`` per scenario, nothing else (a counting or profiling tool's)."""
        return cls(
            rounds=1,
            churn_seconds=seconds,
            throughput_seconds=seconds,
            rtt_samples=0,
            idle_connections=0,
            warmup_seconds=0.0,
            client_procs=1,
            compression=compression,
            log_level=log_level,
        )


def run_scenario(
    children: Children,
    server: Server,
    settings: Settings,
    scenario: str,
    *,
    procs: int = 1,
    concurrency: int = 1,
    duration: float = 0.0,
    on_go: Callable[[], object] | None = None,
    on_done: Callable[[], object] | None = None,
) -> tuple[list[dict[str, Any]], Probe, Probe]:
    """Run one scenario in ``procs`` client processes; (their results, probe before, after).

    ``on_go`` runs once every client is ready (connected, for throughput),
    just before they start; ``on_done`` once they have all reported, before
    they disconnect.
    """
    script = str(ENTRY)
    clients: list[ClientProc] = []
    for index in range(procs):
        share = concurrency // procs + (1 if index < concurrency % procs else 0)
        argv = [sys.executable, script, "--client", scenario, "--url", server.url]
        argv += ["--compression", settings.compression, "--concurrency", str(share)]
        argv += ["--duration", str(duration), "--samples", str(settings.rtt_samples)]
        argv += ["--connections", str(settings.idle_connections // procs)]
        argv += ["--tag", f"{scenario}{index}"]
        clients.append(ClientProc(children, argv))
    try:
        for client in clients:
            client.expect("ready", 60)
        if on_go is not None:
            on_go()
        before = Probe.read(server.proc.pid)
        for client in clients:
            client.say("go")
        bound = duration + settings.rtt_samples * 0.1 + settings.idle_connections * 0.05 + 60
        results = [client.expect("result", bound) for client in clients]
        after = Probe.read(server.proc.pid)
        if on_done is not None:
            on_done()
    finally:
        for client in clients:
            client.finish()
    return results, before, after


def _errors(results: list[dict[str, Any]]) -> int:
    return sum(sum(result.get("errors", {}).values()) for result in results)


def churn_metrics(
    children: Children, server: Server, settings: Settings
) -> tuple[dict[str, float], list[float]]:
    """The timed churn scenario: (connections/s, connect latency, server CPU; the latencies)."""
    results, before, after = run_scenario(
        children,
        server,
        settings,
        "churn",
        procs=settings.client_procs,
        concurrency=50,
        duration=settings.churn_seconds,
    )
    latencies = [value for result in results for value in result["latencies"]]
    elapsed = max(float(result["elapsed"]) for result in results)
    metrics = {
        "conns_per_s": len(latencies) / elapsed,
        "connect_p50_ms": percentile(latencies, 50) * 1000,
        "connect_p99_ms": percentile(latencies, 99) * 1000,
        "cpu_ms_per_conn": (after.cpu - before.cpu) / max(1, len(latencies)) * 1000,
        "switches_per_conn": (after.switches - before.switches) / max(1, len(latencies)),
        "churn_errors": _errors(results),
        "churn_conns": len(latencies),
    }
    return metrics, latencies


SLICES = 4
"""Slices of each timed scenario per server in a round, in ABBA order."""


def interleaved(kinds: Sequence[str], measure: Callable[[str], T]) -> dict[str, list[T]]:
    """Each kind measured :data:`SLICES` times, the order reversed every other slice (ABBA).

    The servers run side by side the whole time, so the host's drift within
    the round falls on every kind alike.
    """
    parts: dict[str, list[T]] = {kind: [] for kind in kinds}
    for index in range(SLICES):
        for kind in kinds if index % 2 == 0 else kinds[::-1]:
            parts[kind].append(measure(kind))
    return parts


def memory_metrics(children: Children, server: Server, settings: Settings) -> dict[str, float]:
    """The idle connections' scenario: the server's RSS per connection, its threads meanwhile."""
    results, before, after = run_scenario(children, server, settings, "memory")
    opened = sum(int(result["opened"]) for result in results)
    return {
        "rss_kib_per_conn": (after.rss_kib - before.rss_kib) / max(1, opened),
        "threads_with_idle_conns": after.threads,
        "idle_conns_opened": opened,
    }


def churn_slice(
    kind: str, children: Children, server: Server, settings: Settings
) -> tuple[dict[str, float], list[float]]:
    """One slice of churn; under ``--workers``, the master's own CPU per connection too."""
    pid = server.proc.pid
    master_cpu = cpu_seconds(pid)  # the master's own, under --workers (else the server's)
    metrics, latencies = churn_metrics(children, server, settings)
    if kind == WORKERS_KIND:
        master_ms = (cpu_seconds(pid) - master_cpu) / max(1, len(latencies)) * 1000
        metrics["master_cpu_ms_per_conn"] = master_ms
    return metrics, latencies


def throughput_slice(children: Children, server: Server, settings: Settings) -> dict[str, float]:
    """One slice of throughput, as sums: messages, seconds, server CPU, switches, errors."""
    results, before, after = run_scenario(
        children,
        server,
        settings,
        "throughput",
        procs=settings.client_procs,
        concurrency=100,
        duration=settings.throughput_seconds,
    )
    return {
        "messages": sum(int(result["messages"]) for result in results),
        "elapsed": max(float(result["elapsed"]) for result in results),
        "cpu": after.cpu - before.cpu,
        "switches": after.switches - before.switches,
        "errors": _errors(results),
    }


def throughput_combined(parts: list[dict[str, float]]) -> dict[str, float]:
    """Slices of one server's throughput as one run: its messages over its time and CPU."""
    messages = max(1.0, sum(part["messages"] for part in parts))
    elapsed = sum(part["elapsed"] for part in parts)
    return {
        "msgs_per_s": messages / elapsed if elapsed else 0.0,
        "cpu_us_per_msg": sum(part["cpu"] for part in parts) / messages * 1e6,
        "switches_per_msg": sum(part["switches"] for part in parts) / messages,
        "throughput_errors": sum(part["errors"] for part in parts),
    }


def rtt_slice(children: Children, server: Server, settings: Settings) -> list[float]:
    """One slice of sequential round trips on one connection (seconds)."""
    results, _, _ = run_scenario(children, server, settings, "rtt")
    return [value for result in results for value in result["rtts"]]


def start_kind(kind: str, children: Children, settings: Settings, logdir: Path) -> Server:
    """One server of the round: bare, supervised, or supervised with ``--workers``."""
    overrides = {"WS_SUPERVISOR_SERVER_APP": settings.app} if settings.app else None
    workers = settings.workers if kind == WORKERS_KIND else 1
    server_kind = "bare" if kind == "bare" else "supervised"
    return start_server(
        server_kind,
        children,
        settings.compression,
        logdir,
        overrides=overrides,
        log_level=settings.log_level,
        workers=workers,
    )


def bench_round(
    kinds: Sequence[str], children: Children, settings: Settings, logdir: Path
) -> dict[str, tuple[dict[str, float], dict[str, list[float]]]]:
    """Every scenario against every kind, the servers side by side: {kind: (metrics, samples)}.

    Idle memory and the memory scenario run one server after the other;
    churn, throughput and round trips go in :data:`SLICES` ABBA slices each.
    """
    servers: dict[str, Server] = {}
    metrics: dict[str, dict[str, float]] = {kind: {} for kind in kinds}
    sliced = replace(
        settings,
        churn_seconds=settings.churn_seconds / SLICES,
        throughput_seconds=settings.throughput_seconds / SLICES,
        rtt_samples=max(1, settings.rtt_samples // SLICES),
    )
    try:
        for kind in kinds:
            servers[kind] = start_kind(kind, children, settings, logdir)
        for kind, server in servers.items():
            server.wait_ready()
            metrics[kind]["rss_idle_mib"] = Probe.read(server.proc.pid).rss_kib / 1024
        for kind, server in servers.items():
            warmup = settings.warmup_seconds
            run_scenario(children, server, settings, "churn", concurrency=10, duration=warmup)
            server.quiesce()
            metrics[kind].update(memory_metrics(children, server, settings))
            server.quiesce()
        lines = {kind: count_lines(server.log) for kind, server in servers.items()}
        churns = interleaved(kinds, lambda kind: churn_slice(kind, children, servers[kind], sliced))
        samples: dict[str, dict[str, list[float]]] = {}
        for kind, server in servers.items():
            churn, latencies = combined(churns[kind])
            metrics[kind].update(churn)
            samples[kind] = {"connect_ms": [value * 1000 for value in latencies]}
            server.quiesce()  # the log writer has written the churn's lines by now
            gained = count_lines(server.log) - lines[kind]
            metrics[kind]["log_lines_per_conn"] = gained / max(1, len(latencies))
        loads = interleaved(kinds, lambda kind: throughput_slice(children, servers[kind], sliced))
        for kind, server in servers.items():
            metrics[kind].update(throughput_combined(loads[kind]))
            server.quiesce()
        trips = interleaved(kinds, lambda kind: rtt_slice(children, servers[kind], sliced))
        for kind in kinds:
            rtts = [value for part in trips[kind] for value in part]
            metrics[kind]["rtt_p50_us"] = percentile(rtts, 50) * 1e6
            metrics[kind]["rtt_p99_us"] = percentile(rtts, 99) * 1e6
            samples[kind]["rtt_us"] = [value * 1e6 for value in rtts]
    finally:
        for server in servers.values():
            server.stop()
    return {kind: (metrics[kind], samples[kind]) for kind in kinds}


def combined(
    parts: list[tuple[dict[str, float], list[float]]],
) -> tuple[dict[str, float], list[float]]:
    """Slices of one node's churn as one run: its connections over its time, its CPU over them."""
    conns = sum(metrics["churn_conns"] for metrics, _ in parts)
    elapsed = sum(
        metrics["churn_conns"] / metrics["conns_per_s"]
        for metrics, _ in parts
        if metrics["conns_per_s"]
    )
    latencies = [value for _, found in parts for value in found]
    per_conn = [
        key
        for key in ("cpu_ms_per_conn", "switches_per_conn", "master_cpu_ms_per_conn")
        if all(key in found for found, _ in parts)
    ]
    metrics = {
        key: sum(found[key] * found["churn_conns"] for found, _ in parts) / max(1, conns)
        for key in per_conn
    }
    metrics.update(
        conns_per_s=conns / elapsed if elapsed else 0.0,
        connect_p50_ms=percentile(latencies, 50) * 1000,
        connect_p99_ms=percentile(latencies, 99) * 1000,
        churn_errors=sum(found["churn_errors"] for found, _ in parts),
        churn_conns=conns,
    )
    return metrics, latencies
