#!/usr/bin/env python3
"""Load-test a running ws-supervisor (or one it starts with --spawn) and check it leaks nothing.

Clients run in several separate processes (``--procs``); each process owns a
share of the users, opens and closes connections at the churn rate, exchanges
echo and ping frames on each, and sometimes resumes a thread (which may
supersede an open connection). During the run some client processes are
killed (SIGKILL) or frozen (SIGSTOP; killed at the end): those are real
process deaths, and a replacement process takes over their users.

Meanwhile ``/debug/state`` and ``/metrics`` are sampled every 0.2 s. After the
last client is gone and a grace period (keepalive deadline + 2 s), every slot
must be free, ``ws_supervisor_managers_active`` must be 0, and the daemon's
threads must come back to within 10 of their number at the start.

Exit status: 0 no problem; 1 a leak, a quota breach or a mismatch; 2 bad
usage; 3 the daemon could not be reached (or, with --spawn, did not start).

Usage: scripts/loadtest --spawn --users 4 --per-user 5 --churn 20 --kill-pct 10 --freeze-pct 5
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import shutil
import signal
import sys
import tempfile
import time
import tomllib
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import urlsplit

from _loadtest_client import (  # scripts/ is on sys.path when run as a script
    ClientSpec,
    client_process,
)
from _loadtest_procs import Clients, Daemon, Options
from _loadtest_report import build_report, check_leaks, print_report
from _loadtest_sampling import Sampler, fd_targets, final_fds, read_metrics, read_state
from _toolkit import ROOT, exec_child

LOOPBACK = {"127.0.0.1", "::1", "localhost"}
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_UNREACHABLE = 0, 1, 2, 3


def ci_profile() -> dict[str, Any]:
    """config/ci.toml as data ({} if it cannot be read)."""
    try:
        with (ROOT / "config" / "ci.toml").open("rb") as file:
            return tomllib.load(file)
    except (OSError, tomllib.TOMLDecodeError):
        return {}


class Progress:
    """A one-line progress bar on stderr (a plain line every 5 s when not a terminal)."""

    def __init__(self, total: float) -> None:
        self.total = total
        self.tty = sys.stderr.isatty()
        self.last = 0.0

    def show(self, elapsed: float, text: str) -> None:
        now = time.monotonic()
        if now - self.last < (0.25 if self.tty else 5.0):
            return
        self.last = now
        done = min(1.0, elapsed / self.total)
        bar = "#" * round(done * 30) + "-" * (30 - round(done * 30))
        line = f"[{bar}] {elapsed:5.1f}/{self.total:.0f}s {text}"
        if self.tty:
            sys.stderr.write("\r" + line[:150].ljust(150))
        else:
            sys.stderr.write(line + "\n")
        sys.stderr.flush()

    def end(self) -> None:
        if self.tty:
            sys.stderr.write("\n")
            sys.stderr.flush()


def drive(options: Options, clients: Clients, sampler: Sampler) -> None:
    """Run the client processes for the duration, with their kills and freezes."""
    progress = Progress(options.duration)
    began = time.monotonic()
    deadline = began + options.duration
    for slot in range(clients.slots):
        clients.start(slot, min(clients.generation, options.duration), 0.0)
    while (now := time.monotonic()) < deadline:
        clients.step(deadline)
        with clients.lock:
            admitted = clients.counts["admitted"]
            quota = clients.counts["rejected_at_quota"]
        progress.show(
            now - began,
            f"procs {len(clients.running())} (started {clients.started}, killed "
            f"{clients.killed}, frozen {clients.frozen}) admitted {admitted} 429 {quota} "
            f"slots {sampler.last_slots}",
        )
        time.sleep(0.05)
    progress.end()
    clients.finish(timeout=12.0)


def run(options: Options) -> int:
    logdir = Path(tempfile.mkdtemp(prefix="ws-loadtest-"))
    daemon: Daemon | None = None
    clients: Clients | None = None

    def on_term(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    try:
        url, admin, pid = options.url, options.admin, options.pid
        if options.spawn:
            daemon = Daemon(options.per_user, logdir)
            if not daemon.wait_ready():
                print(f"loadtest: the daemon did not start:\n{daemon.tail()}", file=sys.stderr)
                return EXIT_UNREACHABLE
            url, admin, pid = daemon.url, daemon.admin, daemon.proc.pid
        start_state, start_metrics = read_state(admin), read_metrics(admin)
        if start_state is None or start_metrics is None:
            print(f"loadtest: cannot read {admin}/debug/state and /metrics", file=sys.stderr)
            return EXIT_UNREACHABLE
        threads_start = int(start_state["root"]["threads"])
        files_start = fd_targets(pid) if pid is not None else None
        fds_start = None if files_start is None else len(files_start)
        sampler = Sampler(admin, pid)
        sampler.start()
        clients = Clients(options, url, secrets.token_hex(3))
        drive(options, clients, sampler)
        leaks = check_leaks(admin, options, threads_start)
        sampler.halt.set()
        sampler.join(5)
        fds = (fds_start, final_fds(pid, files_start))
        report = build_report(
            options,
            clients,
            sampler=sampler,
            start_metrics=start_metrics,
            leaks=leaks,
            threads_start=threads_start,
            fds=fds,
        )
    except KeyboardInterrupt:
        print("\nloadtest: interrupted", file=sys.stderr)
        return 130
    finally:
        if clients is not None:
            clients.kill_all()
        daemon_log = ""
        if daemon is not None:
            daemon.stop()
            daemon_log = daemon.tail()
        shutil.rmtree(logdir, ignore_errors=True)
    if daemon is not None:
        report["daemon_exit_code"] = daemon.exit_code
        if not report["ok"]:
            report["daemon_log_tail"] = daemon_log
    print_report(report)
    if options.json:
        Path(options.json).write_text(json.dumps(report, indent=2) + "\n")
    return EXIT_OK if report["ok"] else EXIT_FAILED


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    profile = ci_profile()
    timeouts = profile.get("timeouts", {})
    keepalive = float(timeouts.get("ping_interval", 1.0)) + float(timeouts.get("ping_timeout", 1.0))
    settle = (
        float(profile.get("pool", {}).get("idle_seconds", 2.0))
        + float(profile.get("cleanup", {}).get("empty_supervisor_ttl", 2.0))
        + 2.0
    )
    parser = argparse.ArgumentParser(
        prog="scripts/loadtest", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--url", default="ws://127.0.0.1:8765/ws", help="the WebSocket endpoint")
    parser.add_argument("--admin", default="http://127.0.0.1:8766", help="the admin listener")
    parser.add_argument("--users", type=int, default=8, help="distinct users (default 8)")
    parser.add_argument("--per-user", type=int, default=5, help="connections per user (quota)")
    parser.add_argument("--churn", type=float, default=20.0, help="new connections per second")
    parser.add_argument("--kill-pct", type=float, default=0.0, help="%% of client procs SIGKILLed")
    parser.add_argument("--freeze-pct", type=float, default=0.0, help="%% of client procs frozen")
    parser.add_argument("--procs", type=int, default=4, help="concurrent client processes")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of load")
    parser.add_argument("--pid", type=int, help="the daemon's pid, to count its open fds")
    parser.add_argument("--spawn", action="store_true", help="start (and stop) the daemon")
    parser.add_argument("--json", metavar="FILE", help="write the report as JSON")
    parser.add_argument("--seed", type=int, default=1, help="random seed")
    parser.add_argument("--resume-pct", type=float, default=20.0, help="%% resuming a thread")
    parser.add_argument(
        "--keepalive",
        type=float,
        default=keepalive,
        help=f"the daemon's ping_interval + ping_timeout (default {keepalive:g}, the ci profile)",
    )
    parser.add_argument(
        "--settle",
        type=float,
        default=settle,
        help=f"seconds allowed for threads to come back after the grace (default {settle:g})",
    )
    parser.add_argument("--allow-remote", action="store_true", help="allow a non-loopback host")
    internal = parser.add_argument_group("internal")
    internal.add_argument("--client-proc", action="store_true", help=argparse.SUPPRESS)
    internal.add_argument("--client-users", default="", help=argparse.SUPPRESS)
    internal.add_argument("--grace-until", type=float, default=0.0, help=argparse.SUPPRESS)
    internal.add_argument("--mean-life", type=float, default=1.0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    problems = []
    if args.users < 1 or args.per_user < 1 or args.procs < 1:
        problems.append("--users, --per-user and --procs must be >= 1")
    if args.churn <= 0 or not 0 < args.duration <= 3600:
        problems.append("--churn must be > 0 and --duration in (0, 3600]")
    if not (0 <= args.kill_pct <= 100 and 0 <= args.freeze_pct <= 100):
        problems.append("--kill-pct and --freeze-pct are percentages")
    if args.kill_pct + args.freeze_pct > 100:
        problems.append("--kill-pct + --freeze-pct must be <= 100")
    hosts = {urlsplit(args.url).hostname, urlsplit(args.admin).hostname}
    if not args.spawn and not args.allow_remote and not hosts <= LOOPBACK:
        problems.append(f"not loopback: {sorted(str(h) for h in hosts)} (--allow-remote)")
    if problems:
        parser.error("; ".join(problems))
    return args


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["--exec"]:
        exec_child(arguments[1:], signal.SIGTERM)
    if arguments[:1] == ["--exec-kill"]:
        exec_child(arguments[1:], signal.SIGKILL)
    args = parse_args(arguments)
    if args.client_proc:
        spec = ClientSpec(
            url=args.url,
            users=[user for user in args.client_users.split(",") if user],
            per_user=args.per_user,
            rate=args.churn,
            lifetime=args.duration,
            grace_until=args.grace_until,
            mean_life=args.mean_life,
            resume_pct=args.resume_pct,
            seed=args.seed,
        )
        asyncio.run(client_process(spec))
        return EXIT_OK
    options = Options(
        url=args.url,
        admin=args.admin.rstrip("/"),
        users=args.users,
        per_user=args.per_user,
        churn=args.churn,
        kill_pct=args.kill_pct,
        freeze_pct=args.freeze_pct,
        procs=args.procs,
        duration=args.duration,
        pid=args.pid,
        spawn=args.spawn,
        json=args.json,
        seed=args.seed,
        keepalive=args.keepalive,
        settle=args.settle,
        resume_pct=args.resume_pct,
    )
    return run(options)


if __name__ == "__main__":
    sys.exit(main())
