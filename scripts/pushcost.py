#!/usr/bin/env python3
"""What a cross-node push adds to a local one, in several runs on one Redis.

Two supervised nodes (the ci profile at INFO, as ``scripts/bench`` runs
them) on a redis-server of the tool's own, a client of user ``pushed`` on
node B. Each run posts ``--samples`` pushes to B (local) and as many to A
(through Redis), alternately, one at a time, and reads the time from the
request to the frame at the client; then a Redis ``PING``'s round trip
from this process, for reference (``scripts/_cluster_bench.py``). Each run
is judged on its own (the host's load moves both sides together): the
target is that crossing adds at most one ``PING`` round trip, at p50 and
at p99; the medians over the runs of the added times and of the ``PING``
close the report. ``scripts/bench --redis`` measures the same once, after its
churn rounds.

Usage: scripts/pushcost [--runs 5] [--samples 500] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from statistics import median
from typing import Any

from _bench_procs import Children  # scripts/ is on sys.path when run as a script
from _bench_redis import start_redis, start_redis_node
from _bench_scenarios import Settings
from _cluster_bench import push_latency

__all__ = ["added", "main"]


def added(run: dict[str, float]) -> dict[str, float]:
    """One run's added time (cross-node minus local, ms) and its ``PING``, at p50 and p99."""
    found: dict[str, float] = {}
    for pct in ("p50", "p99"):
        extra = run[f"push_cross_frame_{pct}_ms"] - run[f"push_local_frame_{pct}_ms"]
        found[f"added_{pct}_ms"] = extra
        found[f"ping_{pct}_ms"] = run[f"redis_ping_{pct}_ms"]
        found[f"met_{pct}"] = float(extra <= run[f"redis_ping_{pct}_ms"])
    return found


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/pushcost", description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--samples", type=int, default=500)
    parser.add_argument("--json", metavar="FILE")
    args = parser.parse_args(argv)
    logdir = Path(tempfile.mkdtemp(prefix="pushcost-"))
    children = Children()
    redis_server = start_redis(logdir)

    settings = Settings(
        rounds=1,
        churn_seconds=0.0,
        throughput_seconds=0.0,
        rtt_samples=0,
        idle_connections=0,
        warmup_seconds=0.0,
        client_procs=1,
        compression="none",
    )

    def start_node(node_id: str) -> Any:
        server = start_redis_node(
            node_id, children, settings, logdir, redis_server.url, node_id=node_id
        )
        server.wait_ready()
        return server

    runs: list[dict[str, float]] = []
    try:
        for index in range(args.runs):
            run = push_latency(start_node, redis_server.port, args.samples)
            run.update(added(run))
            runs.append(run)
            print(
                f"run {index + 1}: local {run['push_local_frame_p50_ms']:.3f} / "
                f"{run['push_local_frame_p99_ms']:.3f} ms, cross-node "
                f"{run['push_cross_frame_p50_ms']:.3f} / {run['push_cross_frame_p99_ms']:.3f}, "
                f"added {run['added_p50_ms']:+.3f} / {run['added_p99_ms']:+.3f}, "
                f"PING {run['ping_p50_ms']:.3f} / {run['ping_p99_ms']:.3f} (p50 / p99)",
                flush=True,
            )
    finally:
        children.stop_all()
        redis_server.stop()
    for pct in ("p50", "p99"):
        met = sum(int(run[f"met_{pct}"]) for run in runs)
        extra = median(run[f"added_{pct}_ms"] for run in runs)
        ping = median(run[f"ping_{pct}_ms"] for run in runs)
        print(
            f"target at {pct} (added <= one PING): met in {met} of {len(runs)} runs; "
            f"medians of the runs: added {extra:+.3f} ms, PING {ping:.3f} ms"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(runs, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
