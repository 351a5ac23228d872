"""Lease upkeep: holder records read back, the cluster's users, Redis probed and recovered."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from supervisor.cluster.lease import SlotRecord
from supervisor.cluster.ledger import RedisLedger, connect
from supervisor.cluster.upkeep import LedgerEvents, NoEvents, parse_record, parse_records
from supervisor.config.schema import RedisConfig
from tests.cluster.redis_server import RedisServer

pytestmark = pytest.mark.timeout(30)


class Events:
    def __init__(self) -> None:
        self.available: list[bool] = []
        self.errors: list[str] = []

    def ledger_available(self, available: bool) -> None:
        self.available.append(available)

    def ledger_error(self, operation: str) -> None:
        self.errors.append(operation)


_made: list[RedisLedger] = []


@pytest.fixture(autouse=True)
def _close_ledgers() -> Iterator[None]:
    yield
    while _made:
        _made.pop().close()


def make_ledger(
    server: RedisServer, node: str, *, prefix: str = "wss", events: LedgerEvents | None = None
) -> RedisLedger:
    config = RedisConfig(url=server.url, key_prefix=prefix)
    ledger = RedisLedger(connect(config), node, config, 100, events)
    _made.append(ledger)
    return ledger


# --- parse_record ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "record", [b"node-1\tws_abc\t1700000000123", "node-1\tws_abc\t1700000000123"]
)
def test_a_holder_record_as_bytes_or_text_is_its_node_websocket_id_and_time(
    record: bytes | str,
) -> None:
    assert parse_record("alice:t1", record) == SlotRecord(
        "alice:t1", "node-1", "ws_abc", 1700000000123
    )


def test_a_record_with_empty_node_and_websocket_id_keeps_them_empty() -> None:
    assert parse_record("k", "\t\t0") == SlotRecord("k", "", "", 0)


@pytest.mark.parametrize(
    "record",
    [
        b"",
        b"node\tws",  # a field short
        b"node\tws\t1\textra",  # a field over
        b"node\tws\tsoon",  # the time is not a number
        b"node\tws\t1.5",  # nor a whole one
        b"node ws 1",  # spaces, not tabs
        b"\xff\tws\t1",  # not UTF-8
    ],
)
def test_a_malformed_holder_record_raises_value_error(record: bytes) -> None:
    with pytest.raises(ValueError):
        parse_record("k", record)


def test_no_events_hears_every_event_and_does_nothing() -> None:
    events: LedgerEvents = NoEvents()
    events.ledger_available(False)
    events.ledger_error("renew")
    assert vars(events) == {}  # it keeps nothing of what it heard


# --- against a real redis-server --------------------------------------------------------------


def test_the_cluster_users_are_every_user_with_a_slot_under_this_prefix_sorted_and_capped(
    redis_server: RedisServer,
) -> None:
    a, b = make_ledger(redis_server, "A"), make_ledger(redis_server, "B")
    other = make_ledger(redis_server, "C", prefix="other")
    a.acquire("carol", "carol:1", "w1", 5)
    b.acquire("alice", "alice:1", "w2", 5)
    b.acquire("bob", "bob:1", "w3", 5)
    other.acquire("dave", "dave:1", "w4", 5)
    assert a.cluster_users() == ["alice", "bob", "carol"]
    assert len(a.cluster_users(limit=2)) == 2
    assert other.cluster_users() == ["dave"]


def test_a_failed_probe_marks_the_ledger_unavailable_once_and_recover_waits_for_redis(
    redis_server: RedisServer,
) -> None:
    events = Events()
    a = make_ledger(redis_server, "A", events=events)
    assert a.probe() is True and a.available
    redis_server.stop()
    assert a.probe() is False
    assert a.probe() is False
    assert a.available is False
    assert events.errors == ["ping", "ping"]
    assert events.available == [False]  # told once, not at every failure
    assert a.recover() is None  # still down
    assert a.renew_all() == []  # nothing is renewed while down
    redis_server.start()
    assert a.recover() == []
    assert a.available is True and events.available == [False, True]


@pytest.mark.parametrize("holding", [False, True], ids=["idle", "holding a slot"])
def test_a_renewal_notices_redis_gone_whether_the_node_holds_slots_or_not(
    redis_server: RedisServer, holding: bool
) -> None:
    events = Events()
    a = make_ledger(redis_server, "A", events=events)
    if holding:
        a.acquire("alice", "alice:1", "w1", 5)
    assert a.renew_all() == [] and a.available
    redis_server.stop()
    assert a.renew_all() == []
    assert a.available is False
    assert events.available == [False]
    assert events.errors == ["renew" if holding else "ping"]


def test_a_malformed_record_in_redis_is_skipped_and_renewal_goes_on(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    a = make_ledger(redis_server, "A")
    a.acquire("alice", "alice:1", "w1", 5)
    leases_key, holders_key = a.user_keys("alice")
    client = redis_server.client()
    client.hset(holders_key, "alice:junk", "not a record")
    client.zadd(leases_key, {"alice:junk": 2**50})  # a live lease, so every reader sees it
    assert a.renew_all() == []  # the node keeps renewing its own lease
    assert [slot["key"] for slot in a.cluster_slots("alice")] == ["alice:1"]
    assert "skipped a malformed slot record in redis: key=alice:junk" in caplog.text


def test_parse_records_keeps_the_good_records_of_a_flat_reply_and_skips_empty_ones() -> None:
    flat = [b"k1", b"n\tw1\t5", b"k2", b"", b"k3", b"junk", b"k4", b"n\tw4\t7"]
    assert [r.key for r in parse_records(flat)] == ["k1", "k4"]
