#!/usr/bin/env python3
"""Scale check: N idle connections (users x 20 each) against bare websockets and ws-supervisor.

For each server (bare first, then supervised, each its own process, the same
compression): open ``--connections`` idle connections from ``--client-procs``
client processes (each under the open-files hard limit), as ``N / 20`` users
of 20 connections each, every user's in one client process; read the
server's RSS and thread count; then SIGKILL every client process at once
and time, from the kill:

- until every slot is free (supervised): when ``ws_supervisor_managers_active``
  in ``/metrics`` reads 0, the time of the last release is read from
  ``ws_supervisor_last_release_timestamp_seconds``: the daemon's busy loop
  answers ``/metrics`` late, so the time /metrics first reads 0 is reported
  beside it; ``/debug/state``'s ledger count is read once after;
- until every killed client process has exited, its sockets closed by its
  kernel teardown (both): no server can see a peer go before that;
- until the server holds no more sockets than before the connections (both);
  each of these is polled on a thread of its own;
- until its thread count is back to what it was before the connections.

Keepalive is ``--ping-interval`` (default 20 s, production's) on both, and the
supervised server's idle timeout is 600 s, so nothing is reaped while the
connections open. Linux only (reads ``/proc``).

The supervised server runs the production quota, 20 per user (its emergency
action off, so that full users are not shed), and the quota is checked
throughout: ``/debug/state`` is read while the connections open and once
they are open (no user ever above 20, every user at exactly 20 in the end,
as many slots as connections), and every 25th user's client tries a 21st
connection, which must be refused (429).

Beyond one process (100,000 connections): ``--workers N`` serves with
``ws-supervisor serve --workers N`` (RSS, CPU, threads and open files are
summed over the master and its workers); ``--sources`` gives each client
process its own source address, 127.0.0.2 and on (one address pair runs out
of ephemeral ports near 28,000), and ``--bare-connections`` measures bare
websockets at another count (its RSS per connection at 10,000 is the
reference for the supervised one's at 100,000). The open and close
timeouts are raised, since 100,000 handshakes on two cores take minutes.

Usage: scripts/scale [--connections 10000] [--client-procs 4] [--compression none] [--json FILE]
       scripts/scale --connections 100000 --workers 8 --client-procs 8 --sources \
                     --bare-connections 10000

Internal mode (started by the tool itself): ``--client``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from _bench_client import StdinLines  # scripts/ is on sys.path when run as a script
from _scale_measure import PER_USER, measure
from _toolkit import exec_child
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus, WebSocketException

SAMPLED = 25  # every SAMPLED-th user tries a 21st connection


async def client_main(args: argparse.Namespace) -> None:
    """Open connections ``first .. first + count - 1`` (20 per user), report, hold them.

    From the address ``source`` if given. With ``extra``, then every
    :data:`SAMPLED`-th user tries one more connection, which the quota must refuse.
    """
    url, first, count, source = args.url, args.first, args.count, args.source
    gate = asyncio.Semaphore(100)
    errors: dict[str, int] = {}
    local: dict[str, Any] = {"local_addr": (source, 0)} if source else {}

    async def one(index: int) -> ClientConnection | None:
        async with gate:
            try:
                ws = await connect(
                    f"{url}?user_id=scale-u{index // PER_USER}",
                    compression="deflate" if args.compression == "deflate" else None,
                    ping_interval=None,
                    open_timeout=120,
                    max_size=None,
                    **local,
                )
                await asyncio.wait_for(ws.recv(), 120)
                return ws
            except (OSError, TimeoutError, WebSocketException) as error:
                name = type(error).__name__
                if isinstance(error, InvalidStatus):
                    name = f"HTTP {error.response.status_code}"
                errors[name] = errors.get(name, 0) + 1
                return None

    stdin = StdinLines(asyncio.get_running_loop())
    held = await asyncio.gather(*(one(i) for i in range(first, first + count)))
    opened = [ws for ws in held if ws is not None]
    beyond: dict[str, int] = {}
    if args.extra:
        users = range(first // PER_USER, (first + count) // PER_USER)
        sampled = [user for user in users if user % SAMPLED == 0]
        before = dict(errors)
        late = await asyncio.gather(*(one(user * PER_USER) for user in sampled))
        beyond = {"tried": len(sampled), "admitted": sum(ws is not None for ws in late)}
        beyond.update({k: n - before.get(k, 0) for k, n in errors.items() if n > before.get(k, 0)})
        errors = before
        opened += [ws for ws in late if ws is not None]
    result = {"opened": len(opened), "errors": errors, "beyond_quota": beyond}
    print(f"result {json.dumps(result)}", flush=True)
    await stdin.next()  # held until SIGKILL (or "end")


def quota_verdict(sup: dict[str, Any]) -> list[str]:
    """The quota, exact throughout: what the samples and the 21st connections said."""
    lines = []
    for n, found in enumerate(sup.get("quota_samples") or []):
        when = "once open" if n == len(sup["quota_samples"]) - 1 else "while opening"
        if found is None:
            lines.append(f"quota sample {when}: /debug/state did not answer")
            continue
        silent = found.get("silent_workers", 0), found.get("silent_users", 0)
        whole = found["users"] * PER_USER == sup["connections"] and silent == (0, 0)
        exact = found["most"] <= PER_USER and (
            when != "once open" or (found["least"] == PER_USER and whole)
        )
        lines.append(
            f"quota sample {when}: {found['users']} users, {found['slots']} slots, "
            f"most {found['most']}, least {found['least']}, not answering: {silent[0]} "
            f"worker(s), {silent[1]} user(s) ({'exact' if exact else 'NOT exact'})"
        )
    tried, refused = sup.get("beyond_quota_tried", 0), sup.get("beyond_quota_429", 0)
    lines.append(
        f"21st connection of {tried} sampled users: {refused} refused 429, "
        f"{sup.get('beyond_quota_admitted', 0)} admitted"
    )
    return lines


def report(results: dict[str, dict[str, Any]], args: argparse.Namespace) -> str:
    bare, sup = results["bare"], results["supervised"]
    served = f"ws-supervisor --workers {args.workers}" if args.workers > 1 else "one process"
    lines = [
        f"scale: {sup['connections']} idle connections supervised ({served}), "
        f"{bare['connections']} bare, {PER_USER} per user, compression={args.compression}, "
        f"ping every {args.ping_interval:g}s, {args.client_procs} client processes"
        + (", one source address each" if args.sources else ""),
        f"| {'':40} | {'bare':>9} | {'supervised':>10} |",
        f"|{'-' * 42}|{'-' * 11}|{'-' * 12}|",
    ]
    rows = [
        ("connections opened", "opened"),
        ("seconds to open them", "open_seconds"),
        ("RSS at start (MiB)", "rss_before_mib"),
        ("RSS with the connections (MiB)", "rss_with_mib"),
        ("RSS per connection (KiB)", "rss_kib_per_conn"),
        ("threads before / with the connections", None),
        ("server CPU while they idle (% of a core)", "idle_cpu_pct"),
        ("slots held with the connections", "slots_held"),
        ("after SIGKILL: client processes gone (s)", "clients_gone_s"),
        ("after SIGKILL: last slot freed (s)", "last_release_s"),
        ("after SIGKILL: /metrics reads 0 held (s)", "slots_free_s"),
        ("after SIGKILL: slots held then (ledger)", "slots_held_after"),
        ("after SIGKILL: every socket closed (s)", "sockets_closed_s"),
        ("after SIGKILL: threads back (s)", "threads_back_s"),
        ("server CPU, open + drop (s)", "cpu_s_open_and_drop"),
        ("server CPU, drop alone (s)", "cpu_s_drop"),
    ]
    for label, key in rows:
        if key is None:
            cells = [f"{r['threads_before']} / {r['threads_with_conns']}" for r in (bare, sup)]
        else:
            cells = ["n/a" if r.get(key) is None else str(r[key]) for r in (bare, sup)]
        lines.append(f"| {label:40} | {cells[0]:>9} | {cells[1]:>10} |")
    above = sup["rss_kib_per_conn"] - bare["rss_kib_per_conn"]
    ratio = sup["rss_kib_per_conn"] / bare["rss_kib_per_conn"] if bare["rss_kib_per_conn"] else 0
    lines.append(
        f"supervised RSS growth per connection: {above:+.1f} KiB against bare's, {ratio:.2f}x"
    )
    lines += quota_verdict(sup)
    for kind, r in results.items():
        if r["errors"]:
            lines.append(f"{kind} client errors: {r['errors']}")
    return "\n".join(lines)


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="scripts/scale", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--connections", type=int, default=10000, help="idle connections")
    parser.add_argument(
        "--bare-connections", type=int, default=0, help="bare's (default: --connections)"
    )
    parser.add_argument("--client-procs", type=int, default=4, help="client processes")
    parser.add_argument(
        "--sources", action="store_true", help="each client process from 127.0.0.2, .3, ..."
    )
    parser.add_argument("--workers", type=int, default=1, help="serve --workers N (supervised)")
    parser.add_argument("--compression", choices=("deflate", "none"), default="deflate")
    parser.add_argument("--ping-interval", type=float, default=20.0, help="keepalive, both")
    parser.add_argument(
        "--idle-seconds",
        type=float,
        default=0.0,
        help="idle CPU sample (default: one ping interval, so both servers ping once in it)",
    )
    parser.add_argument(
        "--sample-after",
        type=float,
        default=5.0,
        help="seconds after the clients start when the quota is first read while they open",
    )
    parser.add_argument(
        "--sample-every",
        type=float,
        default=30.0,
        help="then read again every so many seconds until every connection is open",
    )
    parser.add_argument(
        "--servers", choices=("both", "supervised"), default="both", help="which to measure"
    )
    parser.add_argument("--json", metavar="FILE", help="write the results as JSON")
    internal = parser.add_argument_group("internal mode")
    internal.add_argument("--client", action="store_true", help=argparse.SUPPRESS)
    internal.add_argument("--url", default="", help=argparse.SUPPRESS)
    internal.add_argument("--first", type=int, default=0, help=argparse.SUPPRESS)
    internal.add_argument("--count", type=int, default=0, help=argparse.SUPPRESS)
    internal.add_argument("--source", default="", help=argparse.SUPPRESS)
    internal.add_argument("--extra", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.idle_seconds = args.idle_seconds or args.ping_interval
    args.bare_connections = args.bare_connections or args.connections
    if args.connections < 1 or args.client_procs < 1 or args.workers < 1:
        parser.error("--connections, --client-procs and --workers must be >= 1")
    if args.client_procs > 250 and args.sources:
        parser.error("--sources gives at most 250 client processes an address (127.0.0.2-251)")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["--exec"]:
        exec_child(arguments[1:], signal.SIGKILL)
    args = parse_args(arguments)
    if args.client:
        asyncio.run(client_main(args))
        return 0
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="ws-scale-") as logdir:
        for kind in ("bare", "supervised") if args.servers == "both" else ("supervised",):
            print(f"== {kind}", file=sys.stderr)
            results[kind] = measure(kind, args, Path(logdir))
            print(f"   {json.dumps(results[kind])}", file=sys.stderr)
    if "bare" in results:
        print(report(results, args))
    if args.json:
        Path(args.json).write_text(json.dumps({**results, "args": vars(args)}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
