"""The script link against a real redis-server: order, pipelining, lost scripts, errors."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any, ClassVar

import pytest
import redis

from supervisor.cluster.calls import EAGER_MAX, Reply, ScriptLink
from supervisor.cluster.ledger import connect
from supervisor.config.schema import RedisConfig
from tests.cluster.redis_server import RedisServer

pytestmark = pytest.mark.timeout(30)

SCRIPTS = {
    "INCR": "return redis.call('INCRBY', KEYS[1], ARGV[1])",
    "FAIL": "return redis.error_reply('ERR refused by the script')",
}


def make_link(server: RedisServer, timeout: float = 0.25, *, eager: bool = False) -> ScriptLink:
    return ScriptLink(connect(RedisConfig(url=server.url, timeout=timeout)), SCRIPTS, eager=eager)


@pytest.fixture(params=[False, True], ids=["batched", "eager"])
def link(redis_server: RedisServer, request: pytest.FixtureRequest) -> Iterator[ScriptLink]:
    calls = make_link(redis_server, eager=request.param)
    yield calls
    calls.close()


class Replies:
    """Collects the replies of submitted calls, in the order they come."""

    def __init__(self) -> None:
        self.got: list[Reply] = []
        self.threads: set[str] = set()

    def __call__(self, reply: Reply) -> None:
        self.got.append(reply)
        self.threads.add(threading.current_thread().name)


def test_a_script_runs_with_its_keys_and_arguments(link: ScriptLink) -> None:
    assert link.call("INCR", ["n"], [2]) == 2
    assert link.call("INCR", ["n"], [3]) == 5


def test_submitted_calls_are_answered_in_order_on_the_link_thread(link: ScriptLink) -> None:
    replies = Replies()
    for _ in range(500):
        link.submit("INCR", ["n"], [1], replies)
    assert link.flush(10)
    assert replies.got == list(range(1, 501))
    assert replies.threads == {"redis-link"}


def test_calls_from_many_threads_share_one_connection(
    link: ScriptLink, redis_server: RedisServer
) -> None:
    def work() -> None:
        for _ in range(200):
            link.call("INCR", ["n"], [1])

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert link.call("INCR", ["n"], [0]) == 800
    assert len(redis_server.client().client_list()) == 2  # the link's, and this client


def test_submit_does_not_wait_for_a_slow_server(redis_server: RedisServer) -> None:
    link = make_link(redis_server, timeout=3.0)
    admin = redis_server.client()
    try:
        link.call("INCR", ["n"], [1])
        admin.execute_command("CLIENT", "PAUSE", 500, "ALL")  # type: ignore[no-untyped-call]
        replies = Replies()
        started = time.monotonic()
        for _ in range(100):
            link.submit("INCR", ["n"], [1], replies)
        submitting = time.monotonic() - started
        assert link.flush(5)
    finally:
        link.close()
    assert submitting < 0.25  # the server answers after 0.5 s
    assert replies.got == list(range(2, 102))


def test_a_flushed_script_cache_is_filled_again_in_order(
    link: ScriptLink, redis_server: RedisServer
) -> None:
    link.call("INCR", ["n"], [1])
    redis_server.client().script_flush()
    replies = Replies()
    for _ in range(20):
        link.submit("INCR", ["n"], [1], replies)
    assert link.flush(5)
    assert replies.got == list(range(2, 22))


def test_an_idle_connection_closed_by_a_restart_is_connected_again(
    link: ScriptLink, redis_server: RedisServer
) -> None:
    link.call("INCR", ["n"], [1])
    redis_server.stop()
    redis_server.start()  # empty, and every old socket closed
    assert link.call("INCR", ["n"], [1]) == 1


def test_an_error_reply_goes_to_its_call_alone(link: ScriptLink, redis_server: RedisServer) -> None:
    replies = Replies()
    link.submit("INCR", ["n"], [1], replies)
    link.submit("FAIL", ["n"], [], replies)
    link.submit("INCR", ["n"], [1], replies)
    assert link.flush(5)
    assert replies.got[0] == 1 and replies.got[2] == 2
    assert isinstance(replies.got[1], redis.ResponseError)
    with pytest.raises(redis.ResponseError, match="refused by the script"):
        link.call("FAIL", ["n"])
    assert len(redis_server.client().client_list()) == 2


def test_a_hung_server_fails_every_waiting_call_and_its_connection_is_not_reused(
    link: ScriptLink, redis_server: RedisServer
) -> None:
    link.call("INCR", ["n"], [1])
    admin = redis_server.client()
    admin.execute_command("CLIENT", "PAUSE", 1000, "ALL")  # type: ignore[no-untyped-call]
    replies = Replies()
    for _ in range(5):
        link.submit("INCR", ["n"], [1], replies)
    assert link.flush(5)
    assert len(replies.got) == 5
    assert all(isinstance(reply, redis.TimeoutError) for reply in replies.got)
    admin.execute_command("CLIENT", "UNPAUSE")  # type: ignore[no-untyped-call]
    reply = link.call("INCR", ["n"], [10])
    assert reply == int(admin.get("n") or 0)  # this call's own reply, not a late one
    assert len(admin.client_list()) == 2  # the timed-out connection was closed


def test_close_answers_what_is_queued_and_refuses_what_comes_after(
    redis_server: RedisServer,
) -> None:
    link = make_link(redis_server)
    replies = Replies()
    for _ in range(50):
        link.submit("INCR", ["n"], [1], replies)
    link.close()
    assert replies.got == list(range(1, 51))
    link.submit("INCR", ["n"], [1], replies)
    assert isinstance(replies.got[-1], redis.ConnectionError)
    assert not [t for t in threading.enumerate() if t.name == "redis-link"]
    assert int(redis_server.client().get("n") or 0) == 50


# --- eager writes: a call on an idle link goes out from the submitting thread -----------------


class Recording(redis.Connection):
    """A plain connection that notes which thread wrote each command."""

    writers: ClassVar[list[str]] = []

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        self.writers.append(threading.current_thread().name)
        super().send_packed_command(command, check_health)  # type: ignore[no-untyped-call]


class RecordingTls(redis.SSLConnection):
    """Counted as a TLS connection by its class, but speaks plain TCP to the test's server."""

    writers: ClassVar[list[str]] = []

    def _connect(self) -> Any:
        return redis.Connection._connect(self)  # type: ignore[no-untyped-call]

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        self.writers.append(threading.current_thread().name)
        super().send_packed_command(command, check_health)  # type: ignore[no-untyped-call]


def recording_link(
    server: RedisServer, kind: type[redis.Connection], *, eager: bool = True
) -> ScriptLink:
    client = redis.Redis.from_url(server.url, socket_timeout=1.0, connection_class=kind)
    return ScriptLink(client, SCRIPTS, eager=eager)


@pytest.mark.parametrize(
    ("kind", "eager", "writer"),
    [
        (Recording, True, "MainThread"),
        (Recording, False, "redis-link"),
        (RecordingTls, True, "redis-link"),
    ],
)
def test_a_call_on_an_idle_eager_link_is_written_by_its_submitter_unless_over_tls(
    redis_server: RedisServer, kind: type[Recording] | type[RecordingTls], eager: bool, writer: str
) -> None:
    link = recording_link(redis_server, kind, eager=eager)
    try:
        link.call("INCR", ["n"], [1])  # connects, and loads the scripts: from the link's thread
        kind.writers.clear()
        replies = Replies()
        link.submit("INCR", ["n"], [1], replies)
        assert link.flush(5)
    finally:
        link.close()
    assert kind.writers == [writer]
    assert replies.got == [2]
    assert replies.threads == {"redis-link"}  # the reply is still read by the link's thread


def test_an_eager_write_goes_out_before_the_link_s_thread_can_run(
    redis_server: RedisServer,
) -> None:
    link = make_link(redis_server, eager=True)
    admin = redis_server.client()
    try:
        link.call("INCR", ["n"], [1])
        with link._cond:  # the link's thread cannot take the call, nor read its reply
            link.submit("INCR", ["n"], [5], lambda _: None)
            deadline = time.monotonic() + 2
            while int(admin.get("n") or 0) != 6 and time.monotonic() < deadline:
                time.sleep(0.005)
            seen = int(admin.get("n") or 0)
        assert link.flush(5)
    finally:
        link.close()
    assert seen == 6


def test_a_large_call_and_the_calls_after_a_busy_link_keep_their_order(
    redis_server: RedisServer,
) -> None:
    link = recording_link(redis_server, Recording)
    try:
        link.call("INCR", ["n"], [1])
        Recording.writers.clear()
        replies = Replies()
        link.submit("INCR", ["n"], [1, "x" * EAGER_MAX], replies)  # too large to write eagerly
        for _ in range(200):
            link.submit("INCR", ["n"], [1], replies)
        assert link.flush(5)
    finally:
        link.close()
    assert Recording.writers[0] == "redis-link"
    assert replies.got == list(range(2, 203))


def test_an_eager_write_on_a_restarted_server_is_answered_and_the_link_goes_on(
    link: ScriptLink, redis_server: RedisServer
) -> None:
    link.call("INCR", ["n"], [1])
    redis_server.stop()
    redis_server.start()  # every old socket closed: the idle check sends it by the link's thread
    replies = Replies()
    for _ in range(3):
        link.submit("INCR", ["n"], [1], replies)
    assert link.flush(5)
    assert replies.got == [1, 2, 3]
    redis_server.client().script_flush()  # a written call meets NOSCRIPT: sent again by EVAL
    assert link.call("INCR", ["n"], [1]) == 4
