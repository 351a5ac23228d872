"""The Redis ledger on a Sentinel-managed Redis: a master SIGKILLed, a replica promoted (issue #25).

Each test starts a master, a replica and three sentinels (Debian's
redis-server, on loopback ports) and ledgers whose ``[redis] url`` is the
set's ``redis+sentinel://`` URL, with the cluster link's threads running as
in a daemon. Timings of the set: the master is declared down after 500 ms,
and a failover takes about 1.5 s (up to ~10 s when the sentinels must elect
again), so waits here allow 30 s.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from actors.messages import TakeBack
from actors.policies.ledger import AcquireResult
from supervisor.cluster.ledger import RedisLedger, connect
from supervisor.cluster.link import ClusterLink
from supervisor.config.schema import FailurePolicy, RedisConfig
from tests.cluster.sentinels import SentinelSet, running_sentinels

pytestmark = pytest.mark.timeout(120)

FAILOVER = 30.0  # the longest a failover may take here, re-elections included


@pytest.fixture
def sentinels() -> Iterator[SentinelSet]:
    with running_sentinels() as started:
        yield started


def config_for(
    sentinels: SentinelSet, policy: FailurePolicy = "fail_open", lease_ttl: float = 3.0
) -> RedisConfig:
    return RedisConfig(
        url=sentinels.url,
        timeout=0.5,
        lease_ttl=lease_ttl,
        renew_interval=1.0,
        retry_interval=0.2,
        on_unavailable=policy,
    )


def slots_on(client: redis.Redis, user: str) -> list[str]:
    raw: Any = client.zrange("wss:{" + user + "}:slots", 0, -1)
    return sorted(key.decode() for key in raw)


def until(predicate: Callable[[], bool], timeout: float, what: str) -> float:
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"not within {timeout:g}s: {what}")
        time.sleep(0.02)
    return time.monotonic() - started


class Node:
    """A ledger with its cluster link running; a take-back frees the slot, as the tree does."""

    def __init__(self, config: RedisConfig, node_id: str, *, start: bool = True) -> None:
        self.client = connect(config)
        self.ledger = RedisLedger(self.client, node_id, config, 10_000)
        self.taken: list[TakeBack] = []
        self.link = ClusterLink(self.ledger, self.client, self._take_back)
        if start:
            self.link.start()

    def _take_back(self, takeback: TakeBack) -> None:
        self.taken.append(takeback)
        for key, holder in self.ledger.holders(takeback.user_id).items():
            if holder == takeback.websocket_id:
                self.ledger.release(takeback.user_id, key, holder)

    def held(self, user: str) -> set[str]:
        return set(self.ledger.holders(user))

    def stop(self) -> None:
        self.link.stop()
        self.client.close()


def test_a_sentinel_url_reaches_the_master_with_the_script_link_and_the_client(
    sentinels: SentinelSet,
) -> None:
    node = Node(config_for(sentinels), "node-a")
    try:
        assert node.ledger.acquire("alice", "alice:t1", "ws1", 5) is AcquireResult.ACQUIRED
        assert node.ledger.usage("alice") == 1
        master = sentinels.master_client()
        assert slots_on(master, "alice") == ["alice:t1"]
        master.close()
        assert node.ledger.available
    finally:
        node.stop()


def test_leases_are_registered_again_on_the_promoted_replica_and_admissions_resume(
    sentinels: SentinelSet,
) -> None:
    config = config_for(sentinels)
    node = Node(config, "node-a")
    try:
        for i in range(3):
            assert (
                node.ledger.acquire("alice", f"alice:t{i}", f"ws{i}", 5) is AcquireResult.ACQUIRED
            )
        took = sentinels.kill_master()
        new_master = sentinels.master_client()
        # the book's slots come back on the new master, by a resync or by the next renewal
        until(
            lambda: slots_on(new_master, "alice") == ["alice:t0", "alice:t1", "alice:t2"],
            FAILOVER,
            "the leases on the new master",
        )
        until(lambda: node.ledger.available, FAILOVER, "the ledger available again")
        assert node.ledger.acquire("alice", "alice:t3", "ws3", 5) is AcquireResult.ACQUIRED
        assert slots_on(new_master, "alice") == [f"alice:t{i}" for i in range(4)]
        assert node.taken == []  # no connection was closed for the switch
        new_master.close()
        print(f"failover: { ({k: round(v, 2) for k, v in took.items()}) }")
    finally:
        node.stop()


def test_admissions_lost_with_the_master_over_subscribe_a_user_until_their_node_renews() -> None:
    """Writes the master acknowledged but never replicated die with it (a stalled link).

    Quota 3: node-a holds t1 (replicated), then t2 and t3 (not replicated);
    the master is SIGKILLed and the new master knows only t1, so node-b admits
    two more through Redis (fail_closed: never on its own count). node-a has
    made no call since (its renewals start only now, as when a failover fits
    between two renewals): its next renewal finds t2 and t3 gone with no room
    left and takes them back (4002), and the user is within the quota again.
    Measured and bounded: how far above the quota (at most the admissions
    the failover lost) and for how long (one renewal of the node that lost them).
    """
    with running_sentinels(relay=True) as sentinels:
        assert sentinels.relay is not None
        config = config_for(sentinels, "fail_closed", lease_ttl=FAILOVER)  # unrenewed for a while
        a, b = Node(config, "node-a", start=False), Node(config, "node-b")
        try:
            assert a.ledger.acquire("u", "u:t1", "wsa1", limit=3) is AcquireResult.ACQUIRED
            replica = redis.Redis(port=sentinels.replica_port, socket_timeout=2)
            until(lambda: slots_on(replica, "u") == ["u:t1"], 10, "t1 replicated")
            sentinels.relay.frozen.set()  # the replication link stalls
            for i in (2, 3):
                result = a.ledger.acquire("u", f"u:t{i}", f"wsa{i}", limit=3)
                assert result is AcquireResult.ACQUIRED
            killed = time.monotonic()
            sentinels.kill_master()
            assert slots_on(replica, "u") == ["u:t1"]  # t2 and t3 died with the master
            admitted = 0
            while time.monotonic() - killed < FAILOVER and admitted < 2:
                result = b.ledger.acquire("u", f"u:b{admitted}", f"wsb{admitted}", limit=3)
                admitted += result is AcquireResult.ACQUIRED
                if result is not AcquireResult.ACQUIRED:
                    time.sleep(0.02)
            over_from = time.monotonic()
            held = len(a.held("u")) + len(b.held("u"))
            assert held == 5  # two over the quota: the two admissions the failover lost
            a.link.start()
            healed = until(
                lambda: len(a.held("u")) + len(b.held("u")) <= 3, FAILOVER, "within the quota"
            )
            lasted = time.monotonic() - over_from
            print(
                f"node-b admitted 2 more {over_from - killed:.2f} s after the kill: {held} slots"
                f" for a quota of 3, for {lasted:.2f} s (node-a's renewals started then,"
                f" within the quota {healed:.2f} s later); taken back on node-a:"
                f" {[(t.websocket_id, t.why) for t in a.taken]}"
            )
            assert healed <= config.renew_interval + config.timeout + 1.0
            assert sorted(t.websocket_id for t in a.taken) == ["wsa2", "wsa3"]
            assert {t.why for t in a.taken} == {"lease lost, no room left"}
            time.sleep(config.renew_interval * 2)  # two more renewals of both nodes: it stays so
            assert slots_on(replica, "u") == ["u:b0", "u:b1", "u:t1"]
            assert a.held("u") | b.held("u") == {"u:t1", "u:b0", "u:b1"}
            replica.close()
        finally:
            a.stop()
            b.stop()
