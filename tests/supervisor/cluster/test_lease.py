"""Unit tests of the pure lease rules and the cluster channel's messages."""

from __future__ import annotations

import pytest

from actors.messages import TakeBack
from supervisor.cluster.lease import LeasePolicy, SlotRecord, beyond_quota
from supervisor.cluster.link import parse_message
from supervisor.cluster.upkeep import parse_record


def slot(key: str, node: str, acquired: int) -> SlotRecord:
    return SlotRecord(key, node, f"ws-{key}", acquired)


def test_within_the_quota_no_slot_has_to_go() -> None:
    slots = [slot("u:1", "A", 10), slot("u:2", "B", 5)]
    assert beyond_quota(slots, 2) == []


def test_beyond_the_quota_the_newest_slots_go_and_the_oldest_stay() -> None:
    slots = [slot("u:3", "B", 30), slot("u:1", "A", 10), slot("u:4", "C", 40), slot("u:2", "A", 20)]
    assert [s.key for s in beyond_quota(slots, 2)] == ["u:3", "u:4"]


def test_slots_taken_in_the_same_millisecond_are_ordered_by_key_on_every_node() -> None:
    slots = [slot("u:b", "A", 7), slot("u:a", "B", 7), slot("u:c", "C", 7)]
    assert [s.key for s in beyond_quota(slots, 1)] == ["u:b", "u:c"]
    assert beyond_quota(list(reversed(slots)), 1) == beyond_quota(slots, 1)


def test_a_lease_must_survive_one_missed_renewal() -> None:
    with pytest.raises(ValueError, match="renew_interval"):
        LeasePolicy(ttl=3.0, renew_interval=2.0)
    policy = LeasePolicy(ttl=3.0, renew_interval=1.5)
    assert policy.ttl_ms == 3000


def test_fail_open_admits_while_down_and_fail_closed_does_not() -> None:
    assert LeasePolicy(15.0, 5.0, "fail_open").admits_while_down is True
    assert LeasePolicy(15.0, 5.0, "fail_closed").admits_while_down is False


def test_a_holder_record_is_node_tab_websocket_id_tab_milliseconds() -> None:
    record = parse_record("u:t", b"node-1\tws-9\t1700000000123")
    assert record == SlotRecord("u:t", "node-1", "ws-9", 1700000000123)


def test_a_supersede_message_names_the_connection_to_close_with_4001() -> None:
    takeback = parse_message(b"supersede\talice\talice:t1\tws-1")
    assert takeback == TakeBack(
        "alice", "ws-1", "supersede", "the thread connected on another node"
    )


def test_an_evict_message_asks_for_4002() -> None:
    takeback = parse_message("evict\tbob|x\tbob|x:t\tws-2")
    assert takeback is not None and (takeback.user_id, takeback.reason) == ("bob|x", "evict")


@pytest.mark.parametrize(
    "data", [b"", b"supersede\talice\tws-1", b"reboot\ta\tb\tc", b"evict\ta\tb\tc\td", b"\xff\xfe"]
)
def test_a_malformed_channel_message_is_ignored(data: bytes) -> None:
    assert parse_message(data) is None
