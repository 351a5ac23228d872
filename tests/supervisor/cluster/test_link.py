"""The cluster link: its channel's messages, and its two threads on a real redis-server."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator

import pytest
import redis

from actors.messages import TakeBack
from supervisor.cluster.ledger import RedisLedger, connect
from supervisor.cluster.link import LISTEN_WAIT, ClusterLink, parse_message
from supervisor.config.schema import RedisConfig
from tests.cluster.redis_server import RedisServer

pytestmark = pytest.mark.timeout(30)

SUPERSEDED = "the thread connected on another node"

_made: list[RedisLedger] = []


@pytest.fixture(autouse=True)
def _close_ledgers() -> Iterator[None]:
    yield
    while _made:
        _made.pop().close()


def make_ledger(server: RedisServer, node: str, *, ttl: float = 60.0) -> RedisLedger:
    config = RedisConfig(url=server.url, lease_ttl=ttl, renew_interval=ttl / 3)
    ledger = RedisLedger(connect(config), node, config, 100)
    _made.append(ledger)  # closed after the test
    return ledger


def wait_for_takebacks(taken: list[TakeBack], count: int, timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while len(taken) < count and time.monotonic() < deadline:
        time.sleep(0.02)


def cluster_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("cluster-")]


# --- the channel's messages -----------------------------------------------------------------


def test_a_supersede_message_is_a_take_back_of_its_websocket_id_with_reason_supersede() -> None:
    assert parse_message(b"supersede\talice\talice:t1\tws_1") == TakeBack(
        "alice", "ws_1", "supersede", SUPERSEDED
    )


def test_an_evict_message_as_text_is_a_take_back_with_reason_evict() -> None:
    assert parse_message("evict\tbob\tbob:t2\tws_2") == TakeBack(
        "bob", "ws_2", "evict", "evicted for a new connection on another node"
    )


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"supersede",
        b"supersede\talice\talice:t1",  # a field short
        b"supersede\talice\talice:t1\tws_1\textra",  # a field over
        b"release\talice\talice:t1\tws_1",  # not an operation of the channel
        b"SUPERSEDE\talice\talice:t1\tws_1",  # operations are lower case
        b"\xff\xfe\tgarbage",  # not UTF-8, and the wrong shape
        "supersede alice alice:t1 ws_1",  # spaces, not tabs
    ],
)
def test_a_malformed_message_is_none(data: bytes | str) -> None:
    assert parse_message(data) is None


# --- the threads ------------------------------------------------------------------------------


def test_the_cluster_link_closes_a_connection_another_node_superseded(
    redis_server: RedisServer,
) -> None:
    a = make_ledger(redis_server, "A", ttl=3.0)
    b = make_ledger(redis_server, "B", ttl=3.0)
    taken: list[TakeBack] = []
    link = ClusterLink(a, connect(a.config), taken.append).start()
    try:
        a.acquire("u", "u:t", "old", 5)
        time.sleep(0.3)  # the listener subscribes
        b.acquire("u", "u:t", "new", 5)
        deadline = time.monotonic() + 3.0
        while not taken and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        link.stop()
    assert taken[:1] == [TakeBack("u", "old", "supersede", "the thread connected on another node")]


def test_a_malformed_message_on_the_channel_is_logged_and_the_next_one_still_heard(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    a = make_ledger(redis_server, "A")
    taken: list[TakeBack] = []
    publisher = redis_server.client()
    link = ClusterLink(a, connect(a.config), taken.append).start()
    try:
        with caplog.at_level(logging.WARNING, logger="supervisor.cluster.link"):
            deadline = time.monotonic() + 3.0
            while not publisher.pubsub_numsub(a.channel)[0][1] and time.monotonic() < deadline:
                time.sleep(0.02)  # the listener subscribes
            publisher.publish(a.channel, "nonsense")
            publisher.publish(a.channel, "evict\tu\tu:1\tws_9")
            wait_for_takebacks(taken, 1)
    finally:
        link.stop()
        publisher.close()
    assert taken == [TakeBack("u", "ws_9", "evict", "evicted for a new connection on another node")]
    assert [r.getMessage() for r in caplog.records] == [
        "ignored malformed cluster message b'nonsense'"
    ]


def test_a_take_back_that_raises_is_logged_and_the_link_goes_on_delivering(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    a = make_ledger(redis_server, "A")
    taken: list[TakeBack] = []

    def take_back(takeback: TakeBack) -> None:
        taken.append(takeback)
        if takeback.websocket_id == "ws_1":
            raise RuntimeError("the tree refused")

    publisher = redis_server.client()
    link = ClusterLink(a, connect(a.config), take_back).start()
    try:
        with caplog.at_level(logging.ERROR, logger="supervisor.cluster.link"):
            deadline = time.monotonic() + 3.0
            while not publisher.pubsub_numsub(a.channel)[0][1] and time.monotonic() < deadline:
                time.sleep(0.02)
            publisher.publish(a.channel, "supersede\tu\tu:1\tws_1")
            publisher.publish(a.channel, "supersede\tu\tu:2\tws_2")
            wait_for_takebacks(taken, 2)
    finally:
        link.stop()
        publisher.close()
    assert [t.websocket_id for t in taken] == ["ws_1", "ws_2"]
    assert [r.getMessage() for r in caplog.records] == ["take-back of websocket_id=ws_1 failed"]


def test_a_slot_lost_without_a_message_is_taken_back_at_the_next_renewal(
    redis_server: RedisServer,
) -> None:
    a = make_ledger(redis_server, "A", ttl=1.5)
    b = make_ledger(redis_server, "B", ttl=1.5)
    taken: list[TakeBack] = []
    link = ClusterLink(a, connect(a.config), taken.append).start()
    try:
        a.acquire("u", "u:1", "ws_a", 5)
        redis_server.client().delete(*a.user_keys("u"))  # as if A's lease had run out
        b.acquire("u", "u:1", "ws_b", 5)  # no holder left to tell: no message comes
        wait_for_takebacks(taken, 1)  # the maintenance thread renews every 0.5 s
    finally:
        link.stop()
    assert taken == [TakeBack("u", "ws_a", "supersede", SUPERSEDED)]


def test_stop_ends_both_threads_and_closes_the_ledger_s_link(redis_server: RedisServer) -> None:
    a = make_ledger(redis_server, "A")
    link = ClusterLink(a, connect(a.config), lambda _: None).start()
    assert sorted(cluster_threads()) == ["cluster-listener", "cluster-maintenance"]
    link.stop()
    assert cluster_threads() == []
    assert not [t for t in threading.enumerate() if t.name == "redis-link"]


# --- the listener's own reads ------------------------------------------------------------------


def wait_subscribed(publisher: redis.Redis, channel: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not publisher.pubsub_numsub(channel)[0][1]:
        assert time.monotonic() < deadline, "the listener did not subscribe"
        time.sleep(0.02)


@pytest.mark.parametrize("hearing", [False, True])
def test_the_listener_stops_within_its_wait_idle_or_hearing(
    redis_server: RedisServer, hearing: bool
) -> None:
    a = make_ledger(redis_server, "A")
    heard: list[TakeBack] = []
    publisher = redis_server.client()
    link = ClusterLink(a, connect(a.config), heard.append).start()
    done = threading.Event()

    def publish() -> None:
        while not done.is_set():
            publisher.publish(a.channel, "evict\tu\tu:1\tws_1")
            time.sleep(0.001)

    flood = threading.Thread(target=publish)
    try:
        wait_subscribed(publisher, a.channel)
        if hearing:
            flood.start()
            wait_for_takebacks(heard, 5)
        time.sleep(LISTEN_WAIT / 2)  # a read is waiting (or has just got a message)
        started = time.monotonic()
        link.stop()
        took = time.monotonic() - started
    finally:
        done.set()
        if flood.is_alive():
            flood.join()
        publisher.close()
    assert cluster_threads() == []
    assert took < LISTEN_WAIT + 0.5
    assert not hearing or len(heard) >= 5


def test_the_listener_subscribes_again_after_redis_restarts_and_hears_on(
    redis_server: RedisServer,
) -> None:
    config = RedisConfig(
        url=redis_server.url, lease_ttl=60.0, renew_interval=20.0, retry_interval=0.1
    )
    a = RedisLedger(connect(config), "A", config, 100)
    _made.append(a)
    taken: list[TakeBack] = []
    link = ClusterLink(a, connect(config), taken.append).start()
    try:
        publisher = redis_server.client()
        wait_subscribed(publisher, a.channel)
        publisher.close()
        redis_server.stop()
        redis_server.start()  # a new server on the same port: the listener's socket was closed
        publisher = redis_server.client()
        wait_subscribed(publisher, a.channel)
        publisher.publish(a.channel, "evict\tu\tu:1\tws_7")
        wait_for_takebacks(taken, 1)
        publisher.close()
    finally:
        link.stop()
    assert [t.websocket_id for t in taken] == ["ws_7"]


def test_a_large_message_is_heard_whole_on_the_listener_s_thread(
    redis_server: RedisServer,
) -> None:
    a = make_ledger(redis_server, "A")
    heard: list[tuple[str, bytes]] = []
    publisher = redis_server.client()
    link = ClusterLink(a, connect(a.config), lambda _: None)
    link._heard = lambda data: heard.append((threading.current_thread().name, data))  # type: ignore[method-assign]
    link.start()
    big = "x" * 4_000_000  # many reads, with waits between them
    try:
        wait_subscribed(publisher, a.channel)
        publisher.publish(a.channel, big)
        publisher.publish(a.channel, "after")
        deadline = time.monotonic() + 5
        while len(heard) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        link.stop()
        publisher.close()
    assert heard == [("cluster-listener", big.encode()), ("cluster-listener", b"after")]
