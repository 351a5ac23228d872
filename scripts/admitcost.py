#!/usr/bin/env python3
"""The CPU cost of one admission and close, in-process, with no sockets.

A :class:`~actors.tree.SupervisionTree` with the production profile and a
:class:`~supervisor.admin.metrics.MetricsObserver`, as the daemon has them. Each of
``--users`` users first holds ``--held`` connections; then ``--count``
connections are admitted and closed one at a time, round robin over the
users, from this one thread, as the daemon's event loop does
(``admit_nowait``, then the handle's ``closed()``). Prints the process's CPU
time per admission and close (every thread's), and how many admissions were
not answered on the calling thread (the root or the supervisor was busy on a
worker, so the answer came from there). At the end every slot must be free:
exit 1 if any is held.

The figure moves with the machine; compare two trees of code in one sitting
(``git stash``, or two checkouts), a few runs each.

Usage: scripts/admitcost [--users 10] [--held 8] [--count 20000] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

# this checkout's code, not the installed one: two checkouts compare with one .venv
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from actors.context import UserExecutionContext
from actors.ports import Handle
from actors.tree import SupervisionTree
from supervisor.admin.metrics import MetricsObserver
from supervisor.config.load import load_profile
from supervisor.config.schema import Config


class NullPort:
    """A connection that drops what is sent and confirms a close at once, as a peer would."""

    __slots__ = ("handle",)

    def __init__(self) -> None:
        self.handle: Handle | None = None

    def send_text(self, text: str) -> None:
        pass

    def close(self, code: int, reason: str) -> None:
        if self.handle is not None:
            self.handle.closed(code)


def admit(tree: SupervisionTree, user_id: str) -> tuple[Handle, bool]:
    """Admit one connection for ``user_id``; its handle and whether the caller had to wait."""
    port = NullPort()
    ticket = tree.admit_nowait(UserExecutionContext.from_websocket_request(user_id), port)
    answer = ticket.wait(0)
    waited = answer is None
    answer = answer or ticket.wait(5.0)
    if answer is None or answer.handle is None:
        raise SystemExit(f"admitcost: {user_id} was not admitted: {answer}")
    port.handle = answer.handle
    return answer.handle, waited


def run(config: Config, users: int, held: int, count: int) -> dict[str, Any]:
    """Hold ``held`` per user, then time ``count`` admissions and closes."""
    observer = MetricsObserver()
    names = [f"user-{n}" for n in range(users)]
    with SupervisionTree(config, observer=observer) as tree:
        holding = [admit(tree, name)[0] for name in names for _ in range(held)]
        waits, cpu = 0, time.process_time()
        for n in range(count):
            handle, waited = admit(tree, names[n % users])
            handle.closed(1000)
            waits += waited
        cpu = time.process_time() - cpu
        for handle in holding:
            handle.closed(1000)
        left = settle(observer)
    return {
        "users": users,
        "held": held,
        "count": count,
        "cpu_us_per_connection": round(cpu / count * 1e6, 1),
        "waited": waits,
        "slots_held_after": left,
    }


def settle(observer: MetricsObserver, timeout: float = 5.0) -> int:
    """The slots still held once every close is through (or ``timeout`` has passed)."""
    deadline = time.monotonic() + timeout
    while held(observer) and time.monotonic() < deadline:
        time.sleep(0.01)
    return held(observer)


def held(observer: MetricsObserver) -> int:
    """The slots held now, as ``/metrics`` would read them."""
    return int(observer.registry.get_sample_value("ws_supervisor_managers_active") or 0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=10)
    parser.add_argument("--held", type=int, default=8, help="connections each user holds")
    parser.add_argument("--count", type=int, default=20_000, help="admissions and closes timed")
    parser.add_argument("--json", type=Path, help="write the result here")
    args = parser.parse_args(argv)
    config = load_profile("production", env={})
    most = config.quota.max_managers_per_user - 2  # room for the connection being admitted
    if args.users < 1 or args.count < 1 or not 0 <= args.held <= most:
        parser.error(f"--users and --count must be >= 1, --held between 0 and {most}")
    result = run(config, args.users, args.held, args.count)
    print(
        f"admitcost: {result['cpu_us_per_connection']} us of CPU per admission and close "
        f"({args.count} over {args.users} users holding {args.held} each); "
        f"{result['waited']} answered off this thread; "
        f"{result['slots_held_after']} slots held after"
    )
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 1 if result["slots_held_after"] else 0


if __name__ == "__main__":
    sys.exit(main())
