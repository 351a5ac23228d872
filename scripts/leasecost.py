#!/usr/bin/env python3
"""What the Redis ledger costs Redis: per admission, per lease renewal, per release, per slot.

On a redis-server of its own (a free loopback port, no persistence), one
node's :class:`~supervisor.cluster.ledger.RedisLedger` admits ``--users``
users of ``--per-user`` slots each (one ``ACQUIRE`` each, as the daemon
admits), renews every lease ``--rounds`` times (one pipelined ``RENEW`` per
user, as the node's maintenance thread does every ``[redis]
renew_interval``), then releases every slot. Read from the server: its CPU
(``INFO cpu``, user + system) per call of each kind, the memory of a slot
(``used_memory`` with the slots held, less before, per slot), and the wall
time of a renewal of every user (one round trip of the pipeline). The
figures on which docs/PERFORMANCE.md sizes a million connections across
nodes rest on these.

Usage: scripts/leasecost [--users 5000] [--per-user 20] [--rounds 5] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from _toolkit import ROOT, RedisServer  # scripts/ is on sys.path when run as a script

sys.path.insert(0, str(ROOT))

from supervisor.cluster.ledger import RedisLedger, connect
from supervisor.config.schema import RedisConfig


def server_cpu(client: Any) -> float:
    """Seconds of CPU the redis-server has used, user and system."""
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def measure(args: argparse.Namespace) -> dict[str, Any]:
    server = RedisServer().start()
    probe = server.client()
    config = RedisConfig(url=server.url, timeout=30.0, lease_ttl=60.0, renew_interval=20.0)
    ledger = RedisLedger(connect(config), "cost-node", config, args.users * args.per_user)
    try:
        memory_before = int(probe.info("memory")["used_memory"])
        keys = [
            (f"user{u}", f"user{u}:thread{s}", f"ws_{u}_{s}")
            for u in range(args.users)
            for s in range(args.per_user)
        ]
        cpu, started = server_cpu(probe), time.monotonic()
        for user_id, key, holder in keys:
            ledger.acquire(user_id, key, holder, args.per_user)
        acquire_cpu = server_cpu(probe) - cpu
        acquire_wall = time.monotonic() - started
        slots = len(keys)
        memory_per_slot = (int(probe.info("memory")["used_memory"]) - memory_before) / slots
        renew_walls = []
        cpu = server_cpu(probe)
        for _ in range(args.rounds):
            started = time.monotonic()
            taken = ledger.renew_all()
            renew_walls.append(time.monotonic() - started)
            assert taken == [], taken  # every lease held: nothing taken back
        renew_cpu = server_cpu(probe) - cpu
        cpu = server_cpu(probe)
        for user_id, key, holder in keys:
            ledger.release(user_id, key, holder)
        ledger.flush(60.0)
        release_cpu = server_cpu(probe) - cpu
        renewals = args.rounds * args.users
        return {
            "users": args.users,
            "per_user": args.per_user,
            "slots": slots,
            "acquire_us_redis_cpu": round(acquire_cpu / slots * 1e6, 1),
            "acquire_ms_wall": round(acquire_wall / slots * 1e3, 3),
            "renew_us_redis_cpu_per_user": round(renew_cpu / renewals * 1e6, 1),
            "renew_us_redis_cpu_per_slot": round(renew_cpu / renewals / args.per_user * 1e6, 2),
            "renew_all_s_wall": [round(wall, 3) for wall in renew_walls],
            "release_us_redis_cpu": round(release_cpu / slots * 1e6, 1),
            "memory_bytes_per_slot": round(memory_per_slot),
            "keys_left": len(server.keys("wss:*")),
        }
    finally:
        ledger.close()
        probe.close()
        server.stop()


def report(found: dict[str, Any]) -> str:
    return "\n".join(
        [
            f"leasecost: {found['users']} users x {found['per_user']} slots = {found['slots']} "
            "slots on one node, a redis-server of its own",
            f"ACQUIRE: {found['acquire_us_redis_cpu']} us of redis-server CPU per admission "
            f"({found['acquire_ms_wall']} ms wall, one at a time)",
            f"RENEW: {found['renew_us_redis_cpu_per_user']} us of redis-server CPU per user "
            f"renewed ({found['renew_us_redis_cpu_per_slot']} us per slot); every user at once: "
            f"{found['renew_all_s_wall']} s",
            f"RELEASE: {found['release_us_redis_cpu']} us of redis-server CPU per release",
            f"memory: {found['memory_bytes_per_slot']} bytes per slot held",
            f"keys left after the releases: {found['keys_left']}",
        ]
    )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="scripts/leasecost", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--users", type=int, default=5000, help="users holding slots")
    parser.add_argument("--per-user", type=int, default=20, help="slots each user holds")
    parser.add_argument("--rounds", type=int, default=5, help="renewals of every lease")
    parser.add_argument("--json", metavar="FILE", help="write the results as JSON")
    args = parser.parse_args(argv)
    if min(args.users, args.per_user, args.rounds) < 1:
        parser.error("--users, --per-user and --rounds must be >= 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    found = measure(args)
    print(report(found))
    if args.json:
        Path(args.json).write_text(json.dumps({**found, "args": vars(args)}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
