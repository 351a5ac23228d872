#!/usr/bin/env python3
"""Benchmark ws-supervisor against a bare websockets echo server, on loopback.

Both servers speak the same JSON protocol (a welcome frame on connect, then
``echo`` and ``ping`` answered) with the same compression and keepalive
settings, each in its own process, and the load generator runs in separate
processes too. In each round both servers run side by side: idle memory and
the memory scenario go one server after the other, and each timed scenario
(churn, throughput, round trips) goes in :data:`SLICES` slices per server in
ABBA order (bare, supervised, supervised, bare, ...), so that the host's
drift within the round falls on both alike. The scenarios:

- churn: 50 concurrent clients loop connect, welcome, one echo, close;
- throughput: 100 connections ping-pong echo frames as fast as they can;
- rtt: one connection, sequential echo round trips at a low rate;
- memory: N idle connections, server RSS delta per connection.

Server CPU is read from ``/proc/PID/stat`` (every thread of the server
process), memory from ``/proc/PID/status``. Linux only.

With ``--workers N`` each round also runs every scenario against
``ws-supervisor serve --workers N`` (the master and N worker processes; CPU,
memory and threads summed over the process tree) and compares it with the
single-process daemon: server CPU per connection with N workers against one
(issue #23's target: within 1.05x).

With ``--redis`` each round also runs churn against ws-supervisor with the
Redis quota ledger (``[quota] backend = "redis"``), on a redis-server the
bench starts on a free loopback port and stops at the end: connections/s,
connect latency and server CPU as ratios to bare websockets and to the
in-memory ledger, and the Redis requests per connection (from the server's
slow log, with every command logged: ACQUIRE per admission, RELEASE, renewals).
Each round then churns the same way on a master with one replica watched by
three sentinels (of its own; the sentinels at Redis's own periods), on two
nodes running side by side, one with ``[redis] url`` a plain URL of the
master and one a ``redis+sentinel://`` URL, in slices in ABBA order as
above, and the bench reports their paired ratio: what configuring Sentinel
costs in steady state.
After the rounds: local and cross-node pushes' latencies on two nodes, and
what a ``WAIT 1`` after every admission would add (``scripts/_cluster_bench.py``).

The supervised server runs its built-in ``EchoApp``, whose frames are
handled on the event loop (``runs_inline``); ``--app
supervisor.front.apps:WorkerEchoApp`` runs the same echo on the manager workers,
as any app that may block.

The supervised server logs at the level the profiles ship (INFO), as users
run it; ``--log-level`` sets another. Beside CPU time, the bench reads the
server's context switches (every thread's, from ``/proc/PID/task``) and the
lines its log gained per churned connection.

Usage: scripts/bench [--rounds 3] [--quick] [--redis] [--workers N] [--compression none]
       [--json FILE] [--plot FILE.png] [--app package.module:Name] [--log-level INFO]

Internal modes (started by the tool itself): ``--serve-bare`` and ``--client SCENARIO``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shlex
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from _bench_bare import bare_server  # scripts/ is on sys.path when run as a script
from _bench_client import ClientArgs, client_main
from _bench_procs import Children
from _bench_redis import RedisTargets, cluster_extras, redis_round
from _bench_report import (
    fmt,
    matplotlib_available,
    plot,
    print_redis,
    redis_ratios,
    summarize,
    table,
    websockets_version,
    workers_ratios,
    workers_table,
    workers_verdict,
)
from _bench_scenarios import (
    MASTER_KIND,
    REDIS_KIND,
    SENTINEL_KIND,
    SHIPPED_LOG_LEVEL,
    WORKERS_KIND,
    Settings,
    bench_round,
)
from _toolkit import exec_child

__all__ = ["main", "orchestrate", "parse_args", "print_tables", "run_rounds"]

EXIT_NO_MATPLOTLIB = 2


def print_tables(
    summary: dict[str, dict[str, float]],
    settings: Settings,
    args: argparse.Namespace,
    took: float,
) -> None:
    """The run's tables and verdicts, on stdout."""
    print()
    print(
        f"ws-supervisor vs bare websockets, {settings.rounds} round(s), median; "
        f"compression={settings.compression}, {os.cpu_count()} CPUs, "
        f"{settings.client_procs} client process(es), took {took:.0f}s"
        + (f"; app {settings.app}" if settings.app else "")
        + f"; supervised log level {settings.log_level}"
    )
    print(table(summary))
    print(
        "ratio = supervised / bare, of the medians; paired = the median of each round's ratio; "
        "'better' says which direction is the good one."
    )
    if args.redis:
        print_redis(summary)
    if settings.workers > 1:
        print()
        print(f"ws-supervisor serve --workers {settings.workers} against one process, median")
        print(workers_table(summary, settings.workers))
        print(workers_verdict(summary, settings.workers))


def run_rounds(
    children: Children,
    settings: Settings,
    logdir: Path,
    targets: RedisTargets | None,
    *,
    kinds: tuple[str, ...],
    per_round: dict[str, list[dict[str, float]]],
    samples: dict[str, dict[str, list[float]]],
) -> None:
    """Every round: bare and supervised side by side (:func:`bench_round`), then the Redis runs."""
    for number in range(settings.rounds):
        order = kinds if number % 2 == 0 else kinds[::-1]
        print(f"== round {number + 1}/{settings.rounds}: {', '.join(order)}", file=sys.stderr)
        for kind, (metrics, found) in bench_round(order, children, settings, logdir).items():
            per_round[kind].append(metrics)
            for key, values in found.items():
                samples[kind].setdefault(key, []).extend(values)
            shown = ", ".join(f"{k}={fmt(v)}" for k, v in metrics.items())
            print(f"   {kind}: {shown}", file=sys.stderr)
        if targets is not None:
            redis_round(
                children,
                settings,
                logdir,
                targets.server,
                per_round=per_round,
                samples=samples,
                sentinels=targets.sentinels,
            )


def orchestrate(args: argparse.Namespace) -> int:
    if args.plot and not matplotlib_available():
        print(
            "bench: --plot needs matplotlib, which is not installed in this environment "
            "(scripts/bench installs it with the dev extras: pip install -e '.[dev]')",
            file=sys.stderr,
        )
        return EXIT_NO_MATPLOTLIB
    settings = Settings(
        rounds=1 if args.quick else args.rounds,
        churn_seconds=args.duration or (3.0 if args.quick else 10.0),
        throughput_seconds=args.duration or (3.0 if args.quick else 10.0),
        rtt_samples=150 if args.quick else 2000,  # p99: the 20th-worst, not one stall
        idle_connections=args.connections or (300 if args.quick else 1000),
        warmup_seconds=0.5 if args.quick else 1.0,
        client_procs=args.client_procs or max(1, min(4, (os.cpu_count() or 2) // 2)),
        compression=args.compression,
        app=args.app,
        log_level=args.log_level,
        workers=args.workers,
    )
    children = Children()

    def on_term(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    kinds = ("bare", "supervised") + ((WORKERS_KIND,) if settings.workers > 1 else ())
    per_round: dict[str, list[dict[str, float]]] = {kind: [] for kind in kinds}
    samples: dict[str, dict[str, list[float]]] = {kind: {} for kind in kinds}
    started = time.monotonic()
    targets: RedisTargets | None = None
    cluster: dict[str, float] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="ws-bench-") as logdir:
            if args.redis:
                targets = RedisTargets.start(Path(logdir))
                for kind in (REDIS_KIND, MASTER_KIND, SENTINEL_KIND):
                    per_round[kind], samples[kind] = [], {}
            run_rounds(
                children,
                settings,
                Path(logdir),
                targets,
                kinds=kinds,
                per_round=per_round,
                samples=samples,
            )
            if targets is not None:
                cluster = cluster_extras(
                    children, settings, Path(logdir), targets.server, targets.sentinels
                )
    except KeyboardInterrupt:
        print("bench: interrupted", file=sys.stderr)
        return 130
    finally:
        children.stop_all()
        if targets is not None:
            targets.stop()
    summary = summarize(per_round)
    if args.redis:
        summary.update(redis_ratios(summary, per_round))
        summary["cluster"] = cluster
    summary.update(workers_ratios(per_round) if settings.workers > 1 else {})
    print_tables(summary, settings, args, time.monotonic() - started)
    if args.json:
        meta = {
            "cpu_count": os.cpu_count(),
            "python": platform.python_version(),
            "websockets": websockets_version(),
            "platform": platform.platform(),
            "rounds": settings.rounds,
            "durations": {
                "churn_seconds": settings.churn_seconds,
                "throughput_seconds": settings.throughput_seconds,
                "rtt_samples": settings.rtt_samples,
                "idle_connections": settings.idle_connections,
                "warmup_seconds": settings.warmup_seconds,
            },
            "client_procs": settings.client_procs,
            "compression": settings.compression,
            "app": settings.app or "supervisor.front.apps:EchoApp",
            "log_level": settings.log_level,
            "command": shlex.join(sys.argv),
            "seconds": round(time.monotonic() - started, 1),
            "redis": args.redis,
            "workers": settings.workers,
        }
        document = {**summary, "meta": meta, "rounds": per_round}
        Path(args.json).write_text(json.dumps(document, indent=2) + "\n")
    if args.plot:
        plot(Path(args.plot), samples)
        print(f"latency CDFs written to {args.plot}")
    return 0


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="scripts/bench", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "--rounds", type=int, default=3, help="rounds, servers side by side (default 3)"
    )
    parser.add_argument("--quick", action="store_true", help="1 round, short runs (< 60 s)")
    parser.add_argument("--duration", type=float, default=0.0, help="seconds per timed scenario")
    parser.add_argument("--connections", type=int, default=0, help="idle connections (memory)")
    parser.add_argument("--compression", choices=("deflate", "none"), default="deflate")
    parser.add_argument(
        "--app",
        default="",
        help="the supervised server's app (default its EchoApp, which runs inline; "
        "supervisor.front.apps:WorkerEchoApp is the same echo on the manager workers)",
    )
    parser.add_argument(
        "--log-level",
        default=SHIPPED_LOG_LEVEL,
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
        help=f"the supervised server's [logging] level (default {SHIPPED_LOG_LEVEL}, "
        "the level every profile ships)",
    )
    parser.add_argument("--client-procs", type=int, default=0, help="load generator processes")
    parser.add_argument("--json", metavar="FILE", help="write the results as JSON")
    parser.add_argument("--plot", metavar="FILE.png", help="latency CDFs (needs matplotlib)")
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="also run ws-supervisor serve --workers N each round, against one process",
    )
    parser.add_argument(
        "--redis",
        action="store_true",
        help="also churn against ws-supervisor with the Redis ledger (a redis-server of its own)",
    )
    internal = parser.add_argument_group("internal modes")
    internal.add_argument("--serve-bare", action="store_true", help=argparse.SUPPRESS)
    internal.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    internal.add_argument("--max-seconds", type=float, default=3600.0, help=argparse.SUPPRESS)
    internal.add_argument("--ping-interval", type=float, default=0.0, help=argparse.SUPPRESS)
    internal.add_argument(
        "--client", choices=("churn", "throughput", "rtt", "memory"), help=argparse.SUPPRESS
    )
    internal.add_argument("--url", default="", help=argparse.SUPPRESS)
    internal.add_argument("--concurrency", type=int, default=1, help=argparse.SUPPRESS)
    internal.add_argument("--samples", type=int, default=500, help=argparse.SUPPRESS)
    internal.add_argument("--tag", default="bench", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be >= 1")
    return args


def _run_bounded(coroutine: Any, seconds: float) -> None:
    async def bounded() -> None:
        await asyncio.wait_for(coroutine, seconds)

    asyncio.run(bounded())


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["--exec"]:
        exec_child(arguments[1:])
    args = parse_args(arguments)
    if args.serve_bare:
        asyncio.run(bare_server(args.port, args.compression, args.max_seconds, args.ping_interval))
        return 0
    if args.client:
        spec = ClientArgs(
            scenario=args.client,
            url=args.url,
            compression=args.compression,
            concurrency=args.concurrency,
            duration=args.duration,
            samples=args.samples,
            connections=args.connections,
            tag=args.tag,
        )
        hard = args.duration + args.samples * 0.1 + args.connections * 0.1 + 300
        _run_bounded(client_main(spec), hard)
        return 0
    return orchestrate(args)


if __name__ == "__main__":
    sys.exit(main())
