"""The Redis ledger against a real redis-server: admission, leases, outages, recovery."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
import redis

from actors.messages import TakeBack
from actors.policies.ledger import AcquireResult, PendingAcquire
from supervisor.cluster.ledger import RedisLedger, connect
from supervisor.config.schema import FailurePolicy, RedisConfig
from tests.cluster.redis_server import RedisServer

pytestmark = pytest.mark.timeout(30)


class Events:
    """Records what the ledger reports."""

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
    server: RedisServer,
    node: str,
    *,
    ttl: float = 60.0,
    policy: FailurePolicy = "fail_open",
    events: Events | None = None,
    node_limit: int = 100,
    timeout: float = 0.25,
) -> RedisLedger:
    config = RedisConfig(
        url=server.url,
        lease_ttl=ttl,
        renew_interval=ttl / 3,
        on_unavailable=policy,
        timeout=timeout,
    )
    ledger = RedisLedger(connect(config), node, config, node_limit, events)
    _made.append(ledger)  # closed after the test
    return ledger


@pytest.fixture
def nodes(redis_server: RedisServer) -> Iterator[tuple[RedisLedger, RedisLedger]]:
    yield make_ledger(redis_server, "A"), make_ledger(redis_server, "B")


def test_the_quota_counts_slots_on_every_node(nodes: tuple[RedisLedger, RedisLedger]) -> None:
    a, b = nodes
    assert a.acquire("u", "u:1", "w1", 2) is AcquireResult.ACQUIRED
    assert b.acquire("u", "u:2", "w2", 2) is AcquireResult.ACQUIRED
    assert b.acquire("u", "u:3", "w3", 2) is AcquireResult.USER_FULL
    assert a.acquire("u", "u:3", "w3", 2) is AcquireResult.USER_FULL
    assert (a.usage("u"), b.usage("u")) == (2, 2)
    assert (a.total(), b.total()) == (1, 1)


def test_a_release_frees_the_slot_once_sent_and_leaves_no_key_behind(
    nodes: tuple[RedisLedger, RedisLedger], redis_server: RedisServer
) -> None:
    a, b = nodes
    a.acquire("u", "u:1", "w1", 1)
    assert a.release("u", "u:1", "w1") is True
    assert a.holders("u") == {}  # the node's book at once; Redis once the script is sent
    assert a.flush()
    assert b.acquire("u", "u:2", "w2", 1) is AcquireResult.ACQUIRED
    assert b.release("u", "u:2", "w2") is True
    assert b.flush()
    assert redis_server.keys() == []


def test_a_release_by_a_connection_that_does_not_hold_the_key_is_refused(
    nodes: tuple[RedisLedger, RedisLedger],
) -> None:
    a, b = nodes
    a.acquire("u", "u:1", "w1", 3)
    assert a.release("u", "u:1", "someone-else") is False
    assert b.release("u", "u:1", "w1") is False  # B never held it
    assert a.usage("u") == 1


def test_a_key_held_on_another_node_is_superseded_and_that_node_is_told(
    nodes: tuple[RedisLedger, RedisLedger], redis_server: RedisServer
) -> None:
    a, b = nodes
    a.acquire("u", "u:t", "old", 5)
    listener = redis_server.client().pubsub()
    listener.subscribe(a.channel)
    try:
        assert listener.get_message(timeout=2.0)["type"] == "subscribe"
        assert b.acquire("u", "u:t", "new", 5) is AcquireResult.SUPERSEDED
        message = listener.get_message(timeout=2.0)
    finally:
        listener.close()
    assert message is not None and message["data"] == b"supersede\tu\tu:t\told"
    assert [(s["node_id"], s["websocket_id"]) for s in b.cluster_slots("u")] == [("B", "new")]
    assert a.release("u", "u:t", "old") is True  # the old node frees its own book
    assert b.usage("u") == 1  # and leaves B's slot alone


def test_evicting_frees_the_oldest_slot_in_the_cluster(
    nodes: tuple[RedisLedger, RedisLedger],
) -> None:
    a, b = nodes
    a.acquire("u", "u:1", "w1", 2)
    time.sleep(0.005)
    b.acquire("u", "u:2", "w2", 2)
    assert b.acquire("u", "u:3", "w3", 2, evict=True) is AcquireResult.EVICTED
    assert [s["key"] for s in a.cluster_slots("u")] == ["u:2", "u:3"]


def test_the_node_cap_is_counted_on_the_node(redis_server: RedisServer) -> None:
    a = make_ledger(redis_server, "A", node_limit=1)
    assert a.acquire("u", "u:1", "w1", 5) is AcquireResult.ACQUIRED
    assert a.acquire("v", "v:1", "w2", 5) is AcquireResult.NODE_FULL
    assert make_ledger(redis_server, "B").acquire("v", "v:1", "w2", 5) is AcquireResult.ACQUIRED


def test_a_lease_not_renewed_runs_out_and_frees_the_slot(redis_server: RedisServer) -> None:
    dead = make_ledger(redis_server, "A", ttl=0.6)
    alive = make_ledger(redis_server, "B", ttl=0.6)
    dead.acquire("u", "u:1", "w1", 1)
    assert alive.acquire("u", "u:2", "w2", 1) is AcquireResult.USER_FULL
    deadline = time.monotonic() + 0.6 + 1.0
    while alive.acquire("u", "u:2", "w2", 1) is not AcquireResult.ACQUIRED:
        assert time.monotonic() < deadline, "the dead node's lease did not run out"
        time.sleep(0.05)
    alive.release("u", "u:2", "w2")
    assert alive.flush()
    assert redis_server.keys() == []


def test_renewal_keeps_a_lease_alive_past_its_ttl(redis_server: RedisServer) -> None:
    a = make_ledger(redis_server, "A", ttl=0.6)
    a.acquire("u", "u:1", "w1", 2)
    a.acquire("u", "u:2", "w2", 2)
    for _ in range(6):
        time.sleep(0.2)
        assert a.renew_all() == []
    assert a.renew("u", "u:1", "w1") is True
    assert a.renew("u", "u:1", "w2") is False
    assert a.usage("u") == 2


def test_renewal_drops_a_slot_released_while_it_ran(redis_server: RedisServer) -> None:
    a = make_ledger(redis_server, "A")
    a.acquire("u", "u:1", "w1", 2)
    a.acquire("u", "u:2", "w2", 2)
    book = a._book
    real_holders = book.holders

    def holders_then_release(user_id: str) -> dict[str, str]:
        found = real_holders(user_id)
        if "u:2" in found:  # the renewal has read the book: now the release lands (its thread)
            releasing = threading.Thread(target=a.release, args=("u", "u:2", "w2"))
            releasing.start()
            releasing.join(0.5)  # its RELEASE waits until the renewal is sent, then follows it
        return found

    book.holders = holders_then_release  # type: ignore[method-assign]
    assert a.renew_all() == []
    assert [s["key"] for s in a.cluster_slots("u")] == ["u:1"]


def test_an_admission_racing_a_renewal_is_never_dropped_by_it(redis_server: RedisServer) -> None:
    a = make_ledger(redis_server, "A")
    a.acquire("u", "u:1", "w1", 2)
    real_holders, real_sync_once = a._book.holders, a._sync_once
    racing: list[threading.Thread] = []
    missing: list[set[str]] = []  # after each round: held here, absent from Redis

    def holders_then_admit(user_id: str) -> dict[str, str]:
        found = real_holders(user_id)
        if not racing:  # the renewal has read the book: an admission comes on another thread
            racing.append(threading.Thread(target=a.acquire, args=("u", "u:2", "w2", 2)))
            racing[0].start()
            racing[0].join(0.5)  # it lands now, unless it waits for the renewal to be sent
        return found

    def round_then_look(users: Sequence[str], mode: str) -> list[TakeBack]:
        found = real_sync_once(users, mode)
        held = set(real_holders("u"))  # first: a key enters the book once Redis has it
        missing.append(held - {slot["key"] for slot in a.cluster_slots("u")})
        return found

    a._book.holders = holders_then_admit  # type: ignore[method-assign]
    a._sync_once = round_then_look  # type: ignore[method-assign]
    assert a.renew_all() == []
    racing[0].join(5)
    assert missing and all(not keys for keys in missing), missing  # a dropped slot is room
    assert sorted(slot["key"] for slot in a.cluster_slots("u")) == ["u:1", "u:2"]


def test_renewal_reports_slots_that_went_to_another_node_or_lost_their_room(
    redis_server: RedisServer,
) -> None:
    a = make_ledger(redis_server, "A")
    b = make_ledger(redis_server, "B")
    a.acquire("u", "u:1", "w1", 2)
    a.acquire("u", "u:2", "w2", 2)
    redis_server.client().delete(*a.user_keys("u"))  # as if A's leases had run out
    b.acquire("u", "u:1", "w9", 2)  # takes u:1 ...
    b.acquire("u", "u:3", "w8", 2)  # ... and the room u:2 had
    found = {(t.websocket_id, t.reason) for t in a.renew_all()}
    assert found == {("w1", "supersede"), ("w2", "evict")}


def test_renewal_registers_again_a_slot_redis_lost_while_there_is_room(
    redis_server: RedisServer,
) -> None:
    a = make_ledger(redis_server, "A")
    a.acquire("u", "u:1", "w1", 2)
    redis_server.client().flushall()  # a Redis restarted without persistence
    assert a.renew_all() == []
    assert [s["websocket_id"] for s in a.cluster_slots("u")] == ["w1"]


def test_fail_closed_refuses_while_redis_is_down_and_keeps_what_it_holds(
    redis_server: RedisServer,
) -> None:
    events = Events()
    a = make_ledger(redis_server, "A", policy="fail_closed", events=events)
    a.acquire("u", "u:1", "w1", 5)
    redis_server.stop()
    assert a.acquire("u", "u:2", "w2", 5) is AcquireResult.UNAVAILABLE
    assert a.available is False and events.available == [False]
    assert "acquire" in events.errors
    assert a.holders("u") == {"u:1": "w1"}
    assert a.release("u", "u:1", "w1") is True  # a close is never refused
    redis_server.start()
    assert a.recover() == []
    assert a.available is True and events.available == [False, True]
    assert redis_server.keys() == []  # the release made offline reached Redis


def test_fail_open_admits_on_the_node_count_and_registers_it_when_redis_returns(
    redis_server: RedisServer,
) -> None:
    a = make_ledger(redis_server, "A")
    b = make_ledger(redis_server, "B")
    a.acquire("u", "u:1", "w1", 2)
    redis_server.stop()
    assert a.acquire("u", "u:2", "w2", 2) is AcquireResult.ACQUIRED
    assert a.acquire("u", "u:3", "w3", 2) is AcquireResult.USER_FULL  # the node's own count
    redis_server.start()
    assert a.recover() == []
    assert sorted(s["key"] for s in b.cluster_slots("u")) == ["u:1", "u:2"]
    assert b.acquire("u", "u:9", "w9", 2) is AcquireResult.USER_FULL


def test_after_an_outage_a_user_over_quota_keeps_the_oldest_slots(
    redis_server: RedisServer,
) -> None:
    a = make_ledger(redis_server, "A")
    b = make_ledger(redis_server, "B")
    a.acquire("u", "u:1", "a1", 2)
    redis_server.stop()  # and with it every key: Redis keeps nothing on disk here
    time.sleep(0.01)
    b.acquire("u", "u:2", "b2", 2)  # B fails over to its own count ...
    time.sleep(0.01)
    b.acquire("u", "u:3", "b3", 2)  # ... and admits two more: three in the cluster
    redis_server.start()
    assert a.renew_all() == []  # A never saw the outage: it registers its slot again
    assert b.recover() == [TakeBack("u", "b3", "evict", "over quota")]
    assert a.renew_all() == []  # A's slot is the oldest: it stays
    assert sorted(s["websocket_id"] for s in a.cluster_slots("u")) == ["a1", "b2", "b3"]
    b.release("u", "u:3", "b3")  # what the supervisor does on the take-back
    assert b.flush()  # a release does not wait for Redis
    assert a.usage("u") == 2


def test_the_cluster_view_lists_every_node_slot_with_its_lease(
    nodes: tuple[RedisLedger, RedisLedger],
) -> None:
    a, b = nodes
    a.acquire("u", "u:1", "w1", 5)
    b.acquire("u", "u:2", "w2", 5)
    b.acquire("v", "v:1", "w3", 5)
    assert a.cluster_users() == ["u", "v"]
    slots = b.cluster_slots("u")
    assert [(s["key"], s["node_id"], s["websocket_id"]) for s in slots] == [
        ("u:1", "A", "w1"),
        ("u:2", "B", "w2"),
    ]
    assert all(0 < s["lease_left"] <= 60 for s in slots)


def test_a_call_gives_up_within_the_timeout_when_redis_hangs(redis_server: RedisServer) -> None:
    a = make_ledger(redis_server, "A")
    admin = redis_server.client()
    admin.execute_command("CLIENT", "PAUSE", "1500", "ALL")  # type: ignore[no-untyped-call]
    started = time.monotonic()
    try:
        result = a.acquire("u", "u:1", "w1", 5)
    finally:
        elapsed = time.monotonic() - started
        time.sleep(1.6)
    assert result is AcquireResult.ACQUIRED  # fail_open: the node's own count
    assert a.available is False
    assert elapsed < 1.0  # timeout 0.25 s, not the 1.5 s pause
    with pytest.raises(redis.RedisError):
        connect(RedisConfig(url="redis://127.0.0.1:1/0")).ping()


# --- admissions that do not wait ------------------------------------------------------------


class Answers:
    """The ``notify`` of a pending admission: records it and lets the test wait for it."""

    def __init__(self) -> None:
        self.got: list[PendingAcquire] = []
        self.event = threading.Event()

    def __call__(self, pending: PendingAcquire) -> None:
        self.got.append(pending)
        self.event.set()

    def wait(self) -> PendingAcquire:
        assert self.event.wait(5), "no answer came"
        self.event.clear()
        return self.got[-1]


def begin(ledger: RedisLedger, key: str, holder: str, answers: Answers, limit: int = 2) -> Any:
    return ledger.begin_acquire("u", key, holder, limit, evict=False, notify=answers)


def test_an_admission_is_answered_later_on_the_link_thread_and_then_taken(
    nodes: tuple[RedisLedger, RedisLedger],
) -> None:
    a, b = nodes
    answers = Answers()
    pending = begin(a, "u:1", "w1", answers)
    assert isinstance(pending, PendingAcquire)
    assert answers.wait() is pending
    assert a.holders("u") == {}  # not in the book until the supervisor takes the answer
    assert a.end_acquire(pending) is AcquireResult.ACQUIRED
    assert a.holders("u") == {"u:1": "w1"}
    assert b.acquire("u", "u:2", "w2", 2) is AcquireResult.ACQUIRED
    refused = begin(a, "u:3", "w3", answers)
    assert a.end_acquire(answers.wait()) is AcquireResult.USER_FULL
    assert refused is answers.got[-1]
    assert a.holders("u") == {"u:1": "w1"}


def test_a_renewal_keeps_the_slot_of_an_admission_under_way_and_adds_no_refused_one(
    nodes: tuple[RedisLedger, RedisLedger],
) -> None:
    a, b = nodes
    assert a.acquire("u", "u:0", "w0", 3) is AcquireResult.ACQUIRED  # the renewal covers "u"
    answers = Answers()
    begin(a, "u:1", "w1", answers, limit=3)
    taken = answers.wait()  # Redis holds the slot; the book does not, yet
    assert b.acquire("u", "u:2", "w2", 3) is AcquireResult.ACQUIRED
    begin(a, "u:3", "w3", answers, limit=3)
    refused = answers.wait()  # the user is full
    assert b.release("u", "u:2", "w2") and b.flush()  # room again, before the renewal
    assert a.renew_all() == []
    assert [s["key"] for s in a.cluster_slots("u")] == ["u:0", "u:1"]  # and u:3 not added
    assert a.end_acquire(taken) is AcquireResult.ACQUIRED
    assert a.end_acquire(refused) is AcquireResult.USER_FULL
    assert a.renew_all() == []
    assert [s["websocket_id"] for s in a.cluster_slots("u")] == ["w0", "w1"]


def test_a_cancelled_admission_gives_back_the_slot_it_took(redis_server: RedisServer) -> None:
    a = make_ledger(redis_server, "A", timeout=2.0)  # calls outlast the pause below by far
    answers = Answers()
    answered = begin(a, "u:1", "w1", answers)
    answers.wait()
    a.cancel_acquire(answered)  # after its answer
    admin = redis_server.client()
    admin.execute_command("CLIENT", "PAUSE", 200, "ALL")  # type: ignore[no-untyped-call]
    waiting = begin(a, "u:2", "w2", answers)
    a.cancel_acquire(waiting)  # before its answer
    assert a.flush()  # its answer is in, and its undo (a RELEASE sent from the answer) submitted
    assert a.flush()  # the undo answered too
    assert answers.got == [answered]  # a cancelled admission is never announced
    assert (a.usage("u"), a.total()) == (0, 0)
    assert redis_server.keys() == []


def test_releasing_a_user_cancels_its_admissions_under_way(
    nodes: tuple[RedisLedger, RedisLedger], redis_server: RedisServer
) -> None:
    a, _ = nodes
    answers = Answers()
    begin(a, "u:1", "w1", answers)
    a.end_acquire(answers.wait())
    begin(a, "u:2", "w2", answers)
    assert a.release_user("u") == 1  # the crashed supervisor's one slot in the book
    assert a.flush()
    assert (a.usage("u"), a.total()) == (0, 0)
    assert redis_server.keys() == []


def test_admissions_under_way_count_against_the_node_limit(redis_server: RedisServer) -> None:
    a = make_ledger(redis_server, "A", node_limit=1)
    answers = Answers()
    first = begin(a, "u:1", "w1", answers)
    assert isinstance(first, PendingAcquire)
    assert begin(a, "u:2", "w2", answers) is AcquireResult.NODE_FULL
    assert a.end_acquire(answers.wait()) is AcquireResult.ACQUIRED
    assert a.acquire("u", "u:2", "w2", 2) is AcquireResult.NODE_FULL


@pytest.mark.parametrize(
    ("policy", "expected"),
    [("fail_open", AcquireResult.ACQUIRED), ("fail_closed", AcquireResult.UNAVAILABLE)],
)
def test_an_admission_whose_answer_is_a_failure_follows_the_policy(
    redis_server: RedisServer, policy: FailurePolicy, expected: AcquireResult
) -> None:
    events = Events()
    a = make_ledger(redis_server, "A", policy=policy, events=events)
    answers = Answers()
    redis_server.stop()
    pending = begin(a, "u:1", "w1", answers)
    assert isinstance(pending, PendingAcquire)  # Redis was thought up: the script was sent
    assert a.end_acquire(answers.wait()) is expected
    assert not a.available and events.available == [False] and events.errors == ["acquire"]
    assert a.total() == (1 if expected is AcquireResult.ACQUIRED else 0)
