"""Per-user state is bounded: 10,000 distinct users come and go, and the tree forgets each.

The daemon runs in this process (ci profile: ``empty_supervisor_ttl`` 2 s,
ticks of 0.1 s) so that its Python objects can be counted; the users come
from a client process (``churn_client.py``), whose objects are not. The
test counts the tree's per-user entries (the root's users and levels, the
ledger's users, the actors in pykka's registry) and every object the garbage
collector tracks, before and after. RSS is not a measure of this: the
allocator keeps freed pages (docs/SECURITY.md gives the numbers).
"""

from __future__ import annotations

import asyncio
import gc
import json
import resource
import sys
from pathlib import Path

import pykka
import pytest

from supervisor.daemon import Daemon
from tests.integration.harness import running_daemon

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(240)]

CLIENT = str(Path(__file__).with_name("churn_client.py"))
USERS = 10_000
OBJECT_SLACK = 1_000
"""Objects the count may differ by: a leak of one object per user would be ten times this."""


async def churn(daemon: Daemon, prefix: str, count: int) -> dict[str, object]:
    """``count`` distinct users from a client process; its report."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        CLIENT,
        str(daemon.front.port),
        prefix,
        str(count),
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 180)
    report: dict[str, object] = json.loads(out)
    assert report["ok"] == count, report
    return report


def per_user_entries(daemon: Daemon) -> dict[str, int]:
    """What the tree keeps per user, entry by entry (blocking)."""
    snapshot = daemon.tree.snapshot(timeout=10)
    return {
        "root users": snapshot["root"]["users"],
        "users at a level": sum(snapshot["root"]["levels"].values()),
        "supervisors": len(daemon.tree.supervisors(timeout=10)),
        "ledger users": len(daemon.tree.ledger.users()),  # type: ignore[attr-defined]
        "actors": len(pykka.ActorRegistry.get_all()),
    }


async def forgotten(daemon: Daemon, timeout: float) -> float:
    """Wait until no user is left; the seconds it took."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    while (await asyncio.to_thread(per_user_entries, daemon))["root users"]:
        assert loop.time() - started < timeout, "users were still kept"
        await asyncio.sleep(0.05)
    return loop.time() - started


def vm_rss() -> int:
    """This process's resident set now, in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) // 1024
    raise AssertionError("no VmRSS")


def objects() -> int:
    gc.collect()
    return len(gc.get_objects())


async def test_ten_thousand_users_come_and_go_and_the_tree_and_its_objects_return_to_their_start(
    capsys: pytest.CaptureFixture[str],
) -> None:
    async with running_daemon() as daemon:
        cleanup = daemon.config.cleanup
        forget_within = cleanup.empty_supervisor_ttl + daemon.config.timeouts.tick_interval
        await churn(daemon, "warm", 200)  # the caches and the pools every run fills
        await forgotten(daemon, 30)
        await asyncio.sleep(forget_within)  # the keepalive's buckets let go of the last ones
        entries, before = await asyncio.to_thread(per_user_entries, daemon), objects()
        rss_before = vm_rss()
        report = await churn(daemon, "user", USERS)
        after_last_close = await forgotten(daemon, 60)
        # every user is forgotten within the ttl and a tick of its last close (some slack
        # for a loaded machine: the churn's last closes end within its last second)
        assert after_last_close <= forget_within + 2.0, after_last_close
        await asyncio.sleep(forget_within)
        entries_after = await asyncio.to_thread(per_user_entries, daemon)
        assert entries_after == entries
        after = objects()
        assert after - before <= OBJECT_SLACK, (before, after)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024  # KiB on Linux
        with capsys.disabled():
            print(
                f"\n{USERS} users in {report['seconds']:.1f}s: all forgotten "
                f"{after_last_close:.1f}s after the churn (ttl + tick = {forget_within:.1f}s); "
                f"per-user entries {entries} -> {entries_after}; gc objects {before} -> {after}; "
                f"RSS {rss_before} MiB before, {peak} MiB peak, {vm_rss()} MiB after"
            )
