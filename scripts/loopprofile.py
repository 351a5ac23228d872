#!/usr/bin/env python3
"""Python calls per connection on each server's event loop, bare websockets against ws-supervisor.

Each server runs with cProfile installed and off. After a warm-up, a
signal (SIGUSR2) switches it on on the event loop's thread, the main one,
only while the churn scenario of ``scripts/bench`` runs against the server
(from the go, once its clients are ready, to their last result); a second
SIGUSR2 switches it off and writes the stats. Calls and the profiler's own
time are divided by the connections served. Under churn the event loop has
99 % of either server's CPU (``/proc/PID/task``), so this is where a
connection's cost is; the profiler slows every Python call alike, so its
times are for comparing functions, not for the CPU a connection costs
(``scripts/instructions`` and ``scripts/bench`` say that).

It prints each server's calls per connection and, with ``--top N``, the N
functions whose calls per connection add the most to bare websockets' (and
the N that subtract the most), keyed by file (from its package
directory on), line and name.

The supervised server runs the ci profile at ``--log-level`` (INFO, the
level the profiles ship), as ``scripts/bench`` runs it.

Usage: scripts/loopprofile [--seconds 10] [--top 30] [--log-level INFO] [--compression none]
                           [--json FILE]
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import re
import runpy
import signal
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
from _bench_scenarios import SHIPPED_LOG_LEVEL, Settings, run_scenario

Row = tuple[float, float]
"""A function's (calls, own seconds) per connection."""


def function_key(filename: str, line: int, name: str) -> str:
    """``file:line:name``, the file from its package directory on (one checkout or another)."""
    filename = re.sub(r"^.*/site-packages/", "", filename)
    filename = re.sub(r"^.*/(actors|supervisor|scripts)/", r"\1/", filename)
    return f"{filename}:{line}:{name}"


def per_connection(stats: dict[Any, Any], connections: int) -> dict[str, Row]:
    """Every profiled function's calls and own time per connection (``pstats``' raw stats)."""
    rows: dict[str, Row] = {}
    for (filename, line, name), (_, calls, own, _, _) in stats.items():
        key = function_key(filename, line, name)
        before = rows.get(key, (0.0, 0.0))
        rows[key] = (before[0] + calls / connections, before[1] + own / connections)
    return rows


def differences(bare: dict[str, Row], supervised: dict[str, Row]) -> list[tuple[float, str]]:
    """(supervised's calls per connection - bare's, function), most added first."""
    found = [
        (supervised.get(key, (0.0, 0.0))[0] - bare.get(key, (0.0, 0.0))[0], key)
        for key in set(bare) | set(supervised)
    ]
    return sorted((item for item in found if round(item[0], 2)), reverse=True)


def wrap(out: str, argv: list[str]) -> None:
    """Run ``argv`` here, profiled by signal: an interpreter, then ``-m module`` or a script."""
    profile, state = cProfile.Profile(), {"on": False}

    def toggle(*_: object) -> None:
        if state["on"]:
            profile.disable()
            profile.dump_stats(out)
        else:
            profile.enable()
        state["on"] = not state["on"]

    signal.signal(signal.SIGUSR2, toggle)
    rest = argv[1:]  # the interpreter is this one
    if rest[0] == "-m":
        sys.argv = rest[1:]
        runpy.run_module(rest[1], run_name="__main__", alter_sys=True)
    else:
        sys.argv = rest
        sys.path.insert(0, str(Path(rest[0]).resolve().parent))
        runpy.run_path(rest[0], run_name="__main__")


def measure(kind: str, settings: Settings, workdir: Path) -> dict[str, Any]:
    """One server profiled through one churn scenario: its functions per connection."""
    children, out = Children(), workdir / f"{kind}.prof"
    wrapper = [sys.executable, str(Path(__file__).resolve()), "--wrap", str(out)]
    server: Server = start_server(
        kind,
        children,
        settings.compression,
        workdir,
        ping_interval=20.0,  # keepalive as good as off: the count is of the scenario's work
        log_level=settings.log_level,
        wrapper=wrapper,
    )
    try:
        server.wait_ready(60)
        run_scenario(children, server, settings, "churn", concurrency=10, duration=3.0)
        pid = server.proc.pid
        results, _, _ = run_scenario(
            children,
            server,
            settings,
            "churn",
            concurrency=50,
            duration=settings.churn_seconds,
            on_go=lambda: os.kill(pid, signal.SIGUSR2),
            on_done=lambda: os.kill(pid, signal.SIGUSR2),
        )
        deadline = time.monotonic() + 30
        while not out.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.5)  # written whole
    finally:
        server.stop()
        children.stop_all()
    connections = max(1, sum(len(result["latencies"]) for result in results))
    rows = per_connection(pstats.Stats(str(out)).stats, connections)  # type: ignore[attr-defined]
    calls = sum(calls for calls, _ in rows.values())
    return {"connections": connections, "calls_per_connection": calls, "functions": rows}


def main(argv: list[str] | None = None) -> int:
    args_in = sys.argv[1:] if argv is None else argv
    if args_in[:1] == ["--wrap"]:
        wrap(args_in[1], args_in[2:])
        return 0
    parser = argparse.ArgumentParser(
        prog="scripts/loopprofile", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="of profiled churn")
    parser.add_argument("--top", type=int, default=0, help="functions that differ most")
    parser.add_argument(
        "--log-level", default=SHIPPED_LOG_LEVEL, choices=("DEBUG", "INFO", "WARNING", "ERROR")
    )
    parser.add_argument("--compression", choices=("deflate", "none"), default="none")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args(args_in)
    settings = Settings.one_scenario(args.seconds, args.compression, args.log_level)
    found: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="ws-loopprofile-") as workdir:
        for kind in ("bare", "supervised"):
            print(f"== {kind}: churn under cProfile", file=sys.stderr)
            found[kind] = measure(kind, settings, Path(workdir))
    bare, supervised = found["bare"], found["supervised"]
    print(
        f"event loop, compression={args.compression}, supervised log level {args.log_level}, "
        f"{args.seconds:.0f} s of churn"
    )
    for kind in ("bare", "supervised"):
        result = found[kind]
        print(
            f"{kind:10s} Python calls per connection {result['calls_per_connection']:7,.0f} "
            f"({result['connections']:,} connections)"
        )
    if args.top:
        ranked = differences(bare["functions"], supervised["functions"])
        print(f"calls per connection, supervised - bare: the {args.top} that add most, then least")
        shown = (
            ranked if len(ranked) <= 2 * args.top else [*ranked[: args.top], *ranked[-args.top :]]
        )
        for delta, key in shown:
            print(f"{delta:+8.2f}  {key}")
    if args.json:
        args.json.write_text(json.dumps(found, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
