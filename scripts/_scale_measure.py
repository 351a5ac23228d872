"""``scripts/scale``'s measurement of one server: open the connections, read it, drop them.

:func:`measure` starts the server (:func:`_bench_procs.start_server`) and
the client processes (:func:`start_clients`, each ``--client`` with whole
users, :func:`shares`), reads the server's RSS, threads and CPU, samples
the quota while the connections open (:func:`sample_while`,
:func:`quota_sample`), then SIGKILLs every client process at once and
times, each on a thread of its own (:func:`wait_for_all`), until the
clients are gone, the sockets closed, the threads back and every slot free
(:func:`managers_active`, :func:`metric`). Every client runs :data:`ENTRY`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _bench_procs import (  # scripts/ is on sys.path when run as a script
    Children,
    ClientProc,
    Probe,
    Server,
    process_tree,
    start_server,
)
from _toolkit import http_get

from supervisor.admin.dump import every_user

__all__ = [
    "ENTRY",
    "PER_USER",
    "SUPERVISED_OVERRIDES",
    "managers_active",
    "measure",
    "metric",
    "open_fds",
    "quota_sample",
    "sample_while",
    "shares",
    "start_clients",
    "wait_for_all",
]

ENTRY = Path(__file__).resolve().with_name("scale.py")
"""``scripts/scale.py``, which every client process runs: ``--client``."""

PER_USER = 20


def metric(server: Server, name: str) -> float | None:
    """One unlabelled sample from ``/metrics`` (cheap to poll, unlike ``/debug/state``)."""
    try:
        status, body = http_get(server.admin("/metrics"))
    except OSError:
        return None
    for line in body.splitlines() if status == 200 else []:
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def managers_active(server: Server) -> float | None:
    """``ws_supervisor_managers_active``: slots held, as the root counts them."""
    return metric(server, "ws_supervisor_managers_active")


def open_fds(pid: int) -> int:
    """How many file descriptors ``pid`` and the processes under it hold."""
    count = 0
    for each in process_tree(pid):
        with contextlib.suppress(OSError):
            count += len(os.listdir(f"/proc/{each}/fd"))
    return count


def quota_sample(server: Server, timeout: float = 120.0) -> dict[str, int] | None:
    """Every user's slots now, from ``/debug/state``: how many users, the most and least, all.

    ``silent_workers`` and ``silent_users`` count what did not answer in time
    (a worker's whole tree, or one user's supervisor): their slots are not read.
    """
    try:
        status, body = http_get(server.admin("/debug/state"), timeout=timeout)
        state = json.loads(body) if status == 200 else None
    except (OSError, ValueError):
        return None
    if not isinstance(state, dict):
        return None
    users = every_user(state)
    used = [int(user.get("used", 0)) for user in users if "error" not in user]
    return {
        "users": len(used),
        "most": max(used, default=0),
        "least": min(used, default=0),
        "slots": sum(used),
        "silent_workers": sum("error" in worker for worker in state.get("workers", [])),
        "silent_users": len(users) - len(used),
    }


def wait_for_all(
    checks: dict[str, Callable[[], bool]],
    started: float,
    timeout: float,
    slow: frozenset[str] = frozenset(),
) -> dict[str, float | None]:
    """Seconds from ``started`` until each check first held; None if not.

    Each check is polled on a thread of its own, so that a slow one (an HTTP
    request the busy server answers late) delays no other: every 10 ms, or
    every 100 ms for those in ``slow``, which cost the server work (a
    ``/metrics`` scrape every 10 ms takes a good share of a core).
    """
    found: dict[str, float | None] = dict.fromkeys(checks)

    def poll(name: str, check: Callable[[], bool]) -> None:
        pause = 0.1 if name in slow else 0.01
        while time.monotonic() - started < timeout:
            if check():
                found[name] = round(time.monotonic() - started, 3)
                return
            time.sleep(pause)

    threads = [threading.Thread(target=poll, args=item, daemon=True) for item in checks.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return found


def shares(users: int, procs: int) -> list[tuple[int, int]]:
    """``(first connection, count)`` of each client process: whole users, as even as can be."""
    found, first = [], 0
    for n in range(procs):
        mine = users // procs + (1 if n < users % procs else 0)
        found.append((first * PER_USER, mine * PER_USER))
        first += mine
    return found


SUPERVISED_OVERRIDES = {
    "WS_SUPERVISOR_TIMEOUTS_IDLE_TIMEOUT": "600",
    "WS_SUPERVISOR_QUOTA_MAX_MANAGERS_PER_USER": str(PER_USER),  # the production quota
    "WS_SUPERVISOR_LIMITS_OPEN_TIMEOUT": "60",  # minutes of handshakes on two cores
    "WS_SUPERVISOR_SERVER_ADMISSION_TIMEOUT": "30",
    "WS_SUPERVISOR_SERVER_DRAIN_TIMEOUT": "60",
}


def start_clients(
    kind: str, args: argparse.Namespace, server: Server, connections: int, children: Children
) -> list[ClientProc]:
    """The client processes, each with whole users (and its own source address)."""
    script = str(ENTRY)
    clients: list[ClientProc] = []
    for n, (first, count) in enumerate(shares(connections // PER_USER, args.client_procs)):
        argv = [sys.executable, script, "--client", "--url", server.url]
        argv += ["--first", str(first), "--count", str(count)]
        argv += ["--compression", args.compression]
        argv += ["--source", f"127.0.0.{2 + n}"] if args.sources else []
        argv += ["--extra"] if kind == "supervised" else []
        clients.append(ClientProc(children, argv))
    return clients


def sample_while(
    server: Server,
    args: argparse.Namespace,
    samples: list[dict[str, int] | None],
    done: threading.Event,
) -> threading.Thread:
    """The quota, read as the connections open: at --sample-after s, then each --sample-every s."""

    def sample() -> None:
        time.sleep(args.sample_after)
        while not done.is_set():
            samples.append(quota_sample(server))
            done.wait(args.sample_every)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    return thread


def measure(kind: str, args: argparse.Namespace, logdir: Path) -> dict[str, Any]:
    """One server: open the connections, read it, kill the clients, time the release."""
    children = Children()
    connections = args.bare_connections if kind == "bare" else args.connections
    overrides = {
        **SUPERVISED_OVERRIDES,
        "WS_SUPERVISOR_QUOTA_NODE_MAX_MANAGERS": str(max(20000, 2 * connections)),
    }
    server: Server = start_server(
        kind,
        children,
        args.compression,
        logdir,
        ping_interval=args.ping_interval,
        overrides=overrides,
        workers=args.workers if kind == "supervised" else 1,
    )
    try:
        server.wait_ready(60)
        pid = server.proc.pid
        time.sleep(1.0)
        before = Probe.read(pid)
        fds_before = open_fds(pid)
        clients = start_clients(kind, args, server, connections, children)
        started = time.monotonic()
        samples: list[dict[str, int] | None] = []
        opening_done = threading.Event()
        sampler = (
            sample_while(server, args, samples, opening_done) if kind == "supervised" else None
        )
        results = [client.expect("result", 1800) for client in clients]
        opening_done.set()
        if sampler is not None:
            sampler.join()
        open_seconds = time.monotonic() - started
        opened = sum(int(r["opened"]) for r in results)
        time.sleep(2.0)  # let the last admissions and a few keepalives settle
        during = Probe.read(pid)
        if kind == "supervised":
            samples.append(quota_sample(server))
        time.sleep(args.idle_seconds)
        idle_cpu = (Probe.read(pid).cpu - during.cpu) / args.idle_seconds
        last_sample = samples[-1] if samples else None
        slots = last_sample["slots"] if last_sample else server.slots_held()
        at_kill = Probe.read(pid)
        killed_at, killed_wall = time.monotonic(), time.time()
        for client in clients:
            os.killpg(client.proc.pid, signal.SIGKILL)
        checks = {
            # every client process has exited, so every one of its sockets is closed (FIN sent)
            "clients_gone_s": lambda: all(client.proc.poll() is not None for client in clients),
            "sockets_closed_s": lambda: open_fds(pid) <= fds_before,
            "threads_back_s": lambda: Probe.read(pid).threads <= before.threads,
        }
        if kind == "supervised":
            checks["slots_free_s"] = lambda: managers_active(server) == 0
        released = wait_for_all(checks, killed_at, 120, slow=frozenset({"slots_free_s"}))
        after_sample = quota_sample(server) if kind == "supervised" else None
        ledger_after = after_sample["slots"] if after_sample else server.slots_held()
        if kind == "supervised" and released["slots_free_s"] is not None:
            last = metric(server, "ws_supervisor_last_release_timestamp_seconds")
            if last is not None:
                released["last_release_s"] = round(last - killed_wall, 3)
        after = Probe.read(pid)
        total = time.monotonic() - killed_at
        beyond = [r.get("beyond_quota") or {} for r in results]
        return {
            "connections": connections,
            "opened": opened,
            "errors": [r["errors"] for r in results if r["errors"]],
            "open_seconds": round(open_seconds, 1),
            "rss_before_mib": round(before.rss_kib / 1024, 1),
            "rss_with_mib": round(during.rss_kib / 1024, 1),
            "rss_kib_per_conn": round((during.rss_kib - before.rss_kib) / max(1, opened), 1),
            "threads_before": before.threads,
            "threads_with_conns": during.threads,
            "threads_after": after.threads,
            "idle_cpu_pct": round(100 * idle_cpu, 1),
            "slots_held": slots,
            "quota_samples": samples,
            "beyond_quota_tried": sum(b.get("tried", 0) for b in beyond),
            "beyond_quota_admitted": sum(b.get("admitted", 0) for b in beyond),
            "beyond_quota_429": sum(b.get("HTTP 429", 0) for b in beyond),
            "slots_held_after": ledger_after,
            "slots_free_s": released.get("slots_free_s"),
            "last_release_s": released.get("last_release_s"),
            "clients_gone_s": released["clients_gone_s"],
            "sockets_closed_s": released["sockets_closed_s"],
            "threads_back_s": released["threads_back_s"],
            "cpu_s_open_and_drop": round(after.cpu - before.cpu, 1),
            "cpu_s_drop": round(after.cpu - at_kill.cpu, 2),
            "measured_for_s": round(total, 1),
        }
    finally:
        server.stop()
        children.stop_all()
