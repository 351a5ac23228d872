"""The cluster listener on the node's event loop: heard there, whole, in order, and let go."""

from __future__ import annotations

import asyncio
import functools
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from actors.messages import TakeBack
from supervisor.cluster import subscribed
from supervisor.cluster.ledger import RedisLedger, connect
from supervisor.cluster.link import LISTEN_WAIT, ClusterLink
from supervisor.config.schema import RedisConfig
from supervisor.errors import SubscribedError
from supervisor.front.bridge import run_on_loop
from tests.cluster.redis_server import RedisServer
from tests.supervisor.cluster.test_link import wait_subscribed

pytestmark = pytest.mark.timeout(30)

LOOP = "node-loop"


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    """An event loop running on a thread of its own, as a node's; closed after the test."""
    running = asyncio.new_event_loop()
    thread = threading.Thread(target=running.run_forever, name=LOOP)
    thread.start()
    yield running
    running.call_soon_threadsafe(running.stop)
    thread.join(5)
    running.close()


@pytest.fixture
def ledgers() -> Iterator[list[RedisLedger]]:
    made: list[RedisLedger] = []
    yield made
    for ledger in made:
        ledger.close()


def make_ledger(server: RedisServer, made: list[RedisLedger], **settings: Any) -> RedisLedger:
    config = RedisConfig(url=server.url, lease_ttl=60.0, renew_interval=20.0, **settings)
    ledger = RedisLedger(connect(config), "A", config, 100)
    made.append(ledger)
    return ledger


def wait_for(heard: list[Any], count: int, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while len(heard) < count and time.monotonic() < deadline:
        time.sleep(0.02)


def hearing(link: ClusterLink) -> list[tuple[str, bytes]]:
    heard: list[tuple[str, bytes]] = []
    link._heard = lambda data: heard.append((threading.current_thread().name, data))  # type: ignore[method-assign]
    return heard


def readers(loop: asyncio.AbstractEventLoop) -> int:
    """File descriptors the loop watches, its own self-pipe aside."""
    return asyncio.run_coroutine_threadsafe(_watched(), loop).result(5)


async def _watched() -> int:
    selector = asyncio.get_running_loop()._selector  # type: ignore[attr-defined]
    return len(selector.get_map()) - 1


def test_a_take_back_is_heard_on_the_event_loop_s_thread(
    redis_server: RedisServer, loop: asyncio.AbstractEventLoop, ledgers: list[RedisLedger]
) -> None:
    a = make_ledger(redis_server, ledgers)
    taken: list[tuple[str, TakeBack]] = []
    link = ClusterLink(
        a, connect(a.config), lambda t: taken.append((threading.current_thread().name, t))
    )
    publisher = redis_server.client()
    link.start(functools.partial(run_on_loop, loop))
    try:
        wait_subscribed(publisher, a.channel)
        publisher.publish(a.channel, "evict\tu\tu:1\tws_9")
        wait_for(taken, 1)
    finally:
        link.stop()
        publisher.close()
    evicted = TakeBack("u", "ws_9", "evict", "evicted for a new connection on another node")
    assert taken == [(LOOP, evicted)]


def test_a_large_message_and_the_next_are_heard_whole_in_order_on_the_loop(
    redis_server: RedisServer, loop: asyncio.AbstractEventLoop, ledgers: list[RedisLedger]
) -> None:
    a = make_ledger(redis_server, ledgers)
    link = ClusterLink(a, connect(a.config), lambda _: None)
    heard = hearing(link)
    publisher = redis_server.client()
    link.start(functools.partial(run_on_loop, loop))
    big = "x" * 4_000_000  # many reads of the loop
    try:
        wait_subscribed(publisher, a.channel)
        publisher.publish(a.channel, big)
        publisher.publish(a.channel, "after")
        wait_for(heard, 2)
    finally:
        link.stop()
        publisher.close()
    assert heard == [(LOOP, big.encode()), (LOOP, b"after")]


def test_stop_gives_the_socket_back_and_ends_the_threads_within_the_wait(
    redis_server: RedisServer, loop: asyncio.AbstractEventLoop, ledgers: list[RedisLedger]
) -> None:
    a = make_ledger(redis_server, ledgers)
    link = ClusterLink(a, connect(a.config), lambda _: None)
    publisher = redis_server.client()
    link.start(functools.partial(run_on_loop, loop))
    try:
        wait_subscribed(publisher, a.channel)
        watched = readers(loop)
        started = time.monotonic()
        link.stop()
        took = time.monotonic() - started
        subscribers = publisher.pubsub_numsub(a.channel)[0][1]
    finally:
        publisher.close()
    assert watched == 1
    assert readers(loop) == 0
    assert took < LISTEN_WAIT + 1.0
    assert [t.name for t in threading.enumerate() if t.name.startswith("cluster-")] == []
    assert subscribers == 0


def test_the_listener_subscribes_again_after_redis_restarts_and_hears_on_the_loop(
    redis_server: RedisServer, loop: asyncio.AbstractEventLoop, ledgers: list[RedisLedger]
) -> None:
    a = make_ledger(redis_server, ledgers, retry_interval=0.1)
    link = ClusterLink(a, connect(a.config), lambda _: None)
    heard = hearing(link)
    link.start(functools.partial(run_on_loop, loop))
    try:
        publisher = redis_server.client()
        wait_subscribed(publisher, a.channel)
        publisher.close()
        redis_server.stop()
        redis_server.start()  # a new server on the same port: the loop read its socket's end
        publisher = redis_server.client()
        wait_subscribed(publisher, a.channel)
        publisher.publish(a.channel, "again")
        wait_for(heard, 1)
        publisher.close()
        watched = readers(loop)
    finally:
        link.stop()
    assert heard == [(LOOP, b"again")]
    assert watched == 1  # the old socket was let go before the new one was read


def test_after_bytes_the_loop_cannot_read_the_thread_reads_and_hears_on(
    redis_server: RedisServer,
    loop: asyncio.AbstractEventLoop,
    ledgers: list[RedisLedger],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Refusing(subscribed.SubscribedReader):
        def feed(self, data: bytes) -> list[bytes]:
            raise SubscribedError("not a pub/sub reply: b'odd'")

    monkeypatch.setattr("supervisor.cluster.link.SubscribedReader", Refusing)
    a = make_ledger(redis_server, ledgers, retry_interval=0.1)
    link = ClusterLink(a, connect(a.config), lambda _: None)
    heard = hearing(link)
    publisher = redis_server.client()
    link.start(functools.partial(run_on_loop, loop))
    try:
        wait_subscribed(publisher, a.channel)
        publisher.publish(a.channel, "lost")  # the loop cannot read it: given back
        deadline = time.monotonic() + 5
        while not heard and time.monotonic() < deadline:
            publisher.publish(a.channel, "heard")
            time.sleep(0.05)
    finally:
        link.stop()
        publisher.close()
    assert heard[0] == ("cluster-listener", b"heard")
    assert "cluster listener: not a pub/sub reply: b'odd'; reading on its thread from now on" in [
        r.getMessage() for r in caplog.records
    ]


class PlainAsTls(redis.SSLConnection):
    """A TLS connection by its class, speaking plain TCP to the test's server."""

    def _connect(self) -> Any:
        return redis.Connection._connect(self)  # type: ignore[no-untyped-call]


def test_a_tls_connection_is_read_on_the_listener_s_thread_even_with_a_loop(
    redis_server: RedisServer, loop: asyncio.AbstractEventLoop, ledgers: list[RedisLedger]
) -> None:
    a = make_ledger(redis_server, ledgers)
    client = connect(a.config)
    client.connection_pool.connection_class = PlainAsTls
    link = ClusterLink(a, client, lambda _: None)
    heard = hearing(link)
    publisher = redis_server.client()
    link.start(functools.partial(run_on_loop, loop))
    try:
        wait_subscribed(publisher, a.channel)
        publisher.publish(a.channel, "on the thread")
        wait_for(heard, 1)
        watched = readers(loop)
    finally:
        link.stop()
        publisher.close()
        client.close()
    assert heard == [("cluster-listener", b"on the thread")]
    assert watched == 0
