#!/usr/bin/env python3
"""Instructions per connection and per message, bare websockets against ws-supervisor.

CPU time on a shared host moves by tens of percent from run to run; the
number of instructions a server executes for the same work does not (about
1 %). This runs each server under ``valgrind --tool=callgrind`` with
instrumentation off, warms it up, switches instrumentation on
(``callgrind_control -i on``) only while one scenario of ``scripts/bench``
runs against it (from the go, once its clients are connected, to their
last result, before they disconnect), and divides the instructions counted (user space, every
thread; the kernel's socket work is not counted, and it is the same for both
servers) by the connections or messages served:

- churn: ``--concurrency`` clients loop connect, welcome, one echo, close;
- throughput: 100 connections ping-pong echo frames.

The supervised server runs the ci profile at ``--log-level`` (INFO, the level
the profiles ship), as ``scripts/bench`` runs it.

With ``--sentinel`` it counts the supervised server's churn only, on the
Redis ledger of a master with a replica and three sentinels (``scripts/bench
--redis``'s set, at Redis's own periods), twice: through the master's plain
URL and through the sentinels' ``redis+sentinel://`` URL. What configuring
Sentinel costs a node in steady state, without the host's noise. Under valgrind a server runs
about 50 times slower, so each scenario serves a few hundred connections or a
few thousand messages in ``--seconds``. Linux only; needs valgrind (the
wrapper ``scripts/instructions`` installs it when missing).

Usage: scripts/instructions [--seconds 20] [--log-level INFO] [--compression none] [--sentinel]
                            [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _bench_procs import (  # scripts/ is on sys.path when run as a script
    Children,
    Server,
    start_server,
)
from _bench_redis import redis_env
from _bench_scenarios import SHIPPED_LOG_LEVEL, Settings, run_scenario
from _sentinels import SentinelSet
from _toolkit import HOST

SCENARIOS = {"churn": 50, "throughput": 100}
"""Each scenario and its concurrent connections (as ``scripts/bench``'s)."""


def callgrind(out: Path) -> list[str]:
    return ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}"]


def control(*args: str) -> None:
    subprocess.run(["callgrind_control", *args], check=True, stdout=subprocess.DEVNULL)


def instructions(dump: Path, timeout: float = 60.0) -> int:
    """The total instructions (Ir) of a callgrind dump, once it is written out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if dump.exists():
            totals = [line for line in dump.read_text().splitlines() if line.startswith("totals:")]
            if totals:
                return int(totals[-1].split()[1])
        time.sleep(0.2)
    raise RuntimeError(f"no totals in {dump} after {timeout:.0f}s")


def measure(
    kind: str,
    scenario: str,
    settings: Settings,
    workdir: Path,
    overrides: dict[str, str] | None = None,
) -> dict[str, Any]:
    """One server under callgrind, one scenario counted: instructions per unit."""
    children = Children()
    out = workdir / f"{kind}.{scenario}.callgrind"
    server: Server = start_server(
        "bare" if kind == "bare" else "supervised",
        children,
        settings.compression,
        workdir,
        ping_interval=20.0,  # keepalive as good as off: the count is of the scenario's work
        overrides=overrides,
        log_level=settings.log_level,
        wrapper=callgrind(out),
    )
    try:
        server.wait_ready(600)
        run_scenario(children, server, settings, "churn", concurrency=10, duration=5.0)
        server.quiesce(120)
        pid = str(server.proc.pid)
        results, _, _ = run_scenario(  # counted from the go to the last result
            children,
            server,
            settings,
            scenario,
            concurrency=SCENARIOS[scenario],
            duration=settings.churn_seconds,
            on_go=lambda: control("-i", "on", pid),
            on_done=lambda: control("-i", "off", pid),
        )
        control("-d", pid)
        counted = instructions(out.with_name(f"{out.name}.1"))  # the first dump: the scenario
    finally:
        server.stop()
        children.stop_all()
    if scenario == "churn":
        units = sum(len(result["latencies"]) for result in results)
    else:
        units = sum(int(result["messages"]) for result in results)
    return {"instructions": counted, "units": units, "per_unit": counted / max(1, units)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="scripts/instructions", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--seconds", type=float, default=20.0, help="per counted scenario")
    parser.add_argument(
        "--log-level", default=SHIPPED_LOG_LEVEL, choices=("DEBUG", "INFO", "WARNING", "ERROR")
    )
    parser.add_argument("--compression", choices=("deflate", "none"), default="none")
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument(
        "--sentinel",
        action="store_true",
        help="churn on a Sentinel set's master: its plain URL against the sentinels' URL",
    )
    args = parser.parse_args(argv)
    settings = Settings.one_scenario(args.seconds, args.compression, args.log_level)
    if args.sentinel:
        return sentinel_main(args, settings)
    found: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="ws-instructions-") as workdir:
        for scenario in SCENARIOS:
            for kind in ("bare", "supervised"):
                print(f"== {kind}: {scenario} under callgrind", file=sys.stderr)
                found[f"{kind}.{scenario}"] = measure(kind, scenario, settings, Path(workdir))
    print(
        f"instructions (callgrind, user space, every thread), compression={args.compression}, "
        f"supervised log level {args.log_level}, {args.seconds:.0f} s per scenario"
    )
    for scenario, unit in (("churn", "connection"), ("throughput", "message")):
        bare, supervised = found[f"bare.{scenario}"], found[f"supervised.{scenario}"]
        ratio = supervised["per_unit"] / bare["per_unit"]
        print(
            f"{scenario:10s} per {unit:10s}  bare {bare['per_unit']:>11,.0f} "
            f"({bare['units']:,} {unit}s)  supervised {supervised['per_unit']:>11,.0f} "
            f"({supervised['units']:,})  ratio {ratio:.3f}x"
        )
    if args.json:
        args.json.write_text(json.dumps(found, indent=2) + "\n")
    return 0


def sentinel_main(args: argparse.Namespace, settings: Settings) -> int:
    """``--sentinel``: churn through the master's plain URL and through the sentinels."""
    found: dict[str, dict[str, Any]] = {}
    sentinels = SentinelSet(fast=False).start()  # stopped by cleanup(), below
    try:
        urls = {
            "master_url": f"redis://{HOST}:{sentinels.named_master()}/0",
            "sentinel_url": sentinels.url,
        }
        with tempfile.TemporaryDirectory(prefix="ws-instructions-") as workdir:
            for kind, url in urls.items():
                print(f"== supervised, {kind}: churn under callgrind", file=sys.stderr)
                found[kind] = measure(kind, "churn", settings, Path(workdir), redis_env(url))
    finally:
        sentinels.cleanup()
    master, sentinel = found["master_url"], found["sentinel_url"]
    print(
        f"instructions per connection (callgrind, every thread of the node), churn on the Redis "
        f"ledger, compression={args.compression}, log level {args.log_level}, "
        f"{args.seconds:.0f} s each"
    )
    print(
        f"master URL {master['per_unit']:>11,.0f} ({master['units']:,} connections)  "
        f"sentinels {sentinel['per_unit']:>11,.0f} ({sentinel['units']:,})  "
        f"ratio {sentinel['per_unit'] / master['per_unit']:.3f}x"
    )
    if args.json:
        args.json.write_text(json.dumps(found, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
