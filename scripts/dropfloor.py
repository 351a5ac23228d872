#!/usr/bin/env python3
"""The host's floor for a mass disconnect: how soon any asyncio server can see its clients gone.

``scripts/scale`` SIGKILLs every client process at once and times how soon
the daemon frees every slot. No server can free a slot before its event
loop has seen the connection go, and that takes the kernel's closing of
every client socket, on the same cores, then a wake-up per batch. This
measures that floor with nothing of ours in the way: ``--servers``
processes, each an asyncio server on one ``SO_REUSEPORT`` port whose
protocol does nothing but count ``connection_lost``, and ``--clients``
processes, each opening its share of plain TCP connections from its own
source address (127.0.0.2, 127.0.0.3, ...; one address pair runs out of
ephemeral ports near 28,000). Once every connection is open and seen, every
client process is SIGKILLed at once; it reports when the client processes
were gone and when the servers had seen the last connection lost (the
servers' own ``CLOCK_MONOTONIC`` stamps, which every process shares).

Every process it starts is stopped at the end; a client process also ends by
itself after ``--hold`` seconds. Loopback only; Linux only.

Usage: scripts/dropfloor [--connections 100000] [--servers 8] [--clients 8] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import selectors
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, ClassVar

from _toolkit import HOST, free_port, raise_fd_limit  # scripts/ is on sys.path when run as a script

_REPORT_EVERY = 0.02  # seconds between a server's reports, when its counts moved


class _Counting(asyncio.Protocol):
    """A connection that does nothing: made and lost are counted, bytes ignored."""

    counts: ClassVar[dict[str, float]] = {"made": 0, "lost": 0, "last_lost": 0.0}

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.counts["made"] += 1

    def connection_lost(self, exc: Exception | None) -> None:
        self.counts["lost"] += 1
        self.counts["last_lost"] = time.monotonic()


async def _serve(port: int) -> None:
    """A server process: count, and print ``made lost last_lost`` whenever they move."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((HOST, port))
    sock.listen(4096)
    sock.setblocking(False)
    server = await asyncio.get_running_loop().create_server(_Counting, sock=sock, backlog=4096)
    counts, printed = _Counting.counts, None
    async with server:
        while True:
            await asyncio.sleep(_REPORT_EVERY)
            now = (counts["made"], counts["lost"], counts["last_lost"])
            if now != printed:
                print(*now, flush=True)
                printed = now


def _hold(port: int, source: str, count: int, hold: float) -> None:
    """A client process: ``count`` connections from ``source``, held until killed (or ``hold``)."""
    held = []
    for _ in range(count):
        sock = socket.socket()
        sock.bind((source, 0))
        sock.connect((HOST, port))
        held.append(sock)
    print("ready", flush=True)
    time.sleep(hold)


class _Servers:
    """The server processes and the last line each printed: ``made lost last_lost``."""

    def __init__(self, port: int, count: int) -> None:
        argv = [sys.executable, __file__, "--serve", str(port)]
        self.procs = [
            subprocess.Popen(argv, stdout=subprocess.PIPE, text=True) for _ in range(count)
        ]
        self.selector = selectors.DefaultSelector()
        self.last: dict[int, list[str]] = {}
        self.pending: dict[int, str] = {}
        for proc in self.procs:
            assert proc.stdout is not None
            os.set_blocking(proc.stdout.fileno(), False)
            self.selector.register(proc.stdout, selectors.EVENT_READ, proc.pid)

    def read(self, timeout: float) -> None:
        """Take in what the servers printed within ``timeout``."""
        for key, _ in self.selector.select(timeout):
            stream: IO[str] = key.fileobj  # type: ignore[assignment]
            text = self.pending.pop(key.data, "") + (stream.read() or "")
            *lines, self.pending[key.data] = text.split("\n")
            for line in lines:
                if line.strip():
                    self.last[key.data] = line.split()

    def made(self) -> int:
        return sum(int(report[0]) for report in self.last.values())

    def lost(self) -> int:
        return sum(int(report[1]) for report in self.last.values())

    def last_lost(self) -> float:
        return max(float(report[2]) for report in self.last.values())

    def wait_until(self, count: Callable[[], int], wanted: int, timeout: float) -> bool:
        """Read until ``count()`` reaches ``wanted``; False at ``timeout``."""
        deadline = time.monotonic() + timeout
        while count() < wanted:
            if time.monotonic() > deadline:
                return False
            self.read(0.05)
        return True

    def stop(self) -> None:
        for proc in self.procs:
            proc.kill()
            proc.wait(10)


def _shares(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if index < total % parts else 0) for index in range(parts)]


def measure(connections: int, servers: int, clients: int, hold: float) -> dict[str, Any]:
    """Open, kill every client at once, and time what the servers see."""
    port = free_port()
    pool = _Servers(port, servers)
    held: list[subprocess.Popen[str]] = []
    try:
        time.sleep(0.5)  # every server listening (a connect meanwhile goes to one that is)
        started = time.monotonic()
        for index, share in enumerate(_shares(connections, clients)):
            argv = [sys.executable, __file__, "--hold", str(port), f"127.0.0.{2 + index}"]
            argv += [str(share), str(hold)]
            held.append(subprocess.Popen(argv, stdout=subprocess.PIPE, text=True))
        for proc in held:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        opened = time.monotonic() - started
        if not pool.wait_until(pool.made, connections, 60):
            raise SystemExit(f"the servers saw {pool.made()} of {connections} connections")
        time.sleep(1.0)  # settled
        killed = time.monotonic()
        for proc in held:
            proc.send_signal(signal.SIGKILL)
        gone = []
        for proc in held:
            proc.wait(60)
            gone.append(time.monotonic() - killed)
        seen = pool.wait_until(pool.lost, connections, 60)
        pool.read(3 * _REPORT_EVERY)
        return {
            "connections": connections,
            "servers": servers,
            "clients": clients,
            "open_s": round(opened, 2),
            "clients_gone_s": round(max(gone), 3),
            "first_client_gone_s": round(min(gone), 3),
            "lost_seen": pool.lost(),
            "all_lost_seen": seen,
            "last_lost_s": round(pool.last_lost() - killed, 3),
        }
    finally:
        for proc in held:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
        pool.stop()


def main(argv: list[str] | None = None) -> int:
    args_in = sys.argv[1:] if argv is None else argv
    if args_in[:1] == ["--serve"]:
        raise_fd_limit()
        asyncio.run(_serve(int(args_in[1])))
        return 0
    if args_in[:1] == ["--hold"]:
        raise_fd_limit()
        _hold(int(args_in[1]), args_in[2], int(args_in[3]), float(args_in[4]))
        return 0
    parser = argparse.ArgumentParser(prog="scripts/dropfloor", description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=100_000)
    parser.add_argument("--servers", type=int, default=8, help="server processes")
    parser.add_argument("--clients", type=int, default=8, help="client processes, an address each")
    parser.add_argument(
        "--hold", type=float, default=600.0, help="a client's longest life, seconds"
    )
    parser.add_argument("--json", type=Path, help="write the result here")
    args = parser.parse_args(args_in)
    raise_fd_limit()
    limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0] - 100
    busiest = max(_shares(args.connections, args.servers) + _shares(args.connections, args.clients))
    if not 1 <= args.clients <= 250 or busiest > limit:
        parser.error(f"at most {limit} connections per process and 1-250 clients: add processes")
    found = measure(args.connections, args.servers, args.clients, args.hold)
    print(
        f"{found['connections']:,} connections ({found['servers']} servers, "
        f"{found['clients']} clients), open in {found['open_s']} s; after SIGKILL of every "
        f"client: client processes gone at {found['clients_gone_s']} s, the servers saw "
        f"{found['lost_seen']:,} lost, the last at {found['last_lost_s']} s"
    )
    if args.json:
        args.json.write_text(json.dumps(found, indent=2))
    return 0 if found["all_lost_seen"] else 1


if __name__ == "__main__":
    sys.exit(main())
