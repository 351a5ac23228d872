"""The script caller against a real redis-server: replies, lost scripts, restarts, errors."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
import redis

from supervisor.config import RedisConfig
from supervisor.redis_calls import ScriptCaller
from supervisor.redis_ledger import connect
from tests.cluster.redis_server import RedisServer

pytestmark = pytest.mark.timeout(30)

SCRIPTS = {
    "INCR": "return redis.call('INCRBY', KEYS[1], ARGV[1])",
    "FAIL": "return redis.error_reply('ERR refused by the script')",
}


@pytest.fixture
def caller(redis_server: RedisServer) -> Iterator[ScriptCaller]:
    calls = ScriptCaller(connect(RedisConfig(url=redis_server.url, timeout=0.25)), SCRIPTS)
    yield calls
    calls.close()


def test_a_script_runs_with_its_keys_and_arguments(caller: ScriptCaller) -> None:
    assert caller("INCR", ["n"], [2]) == 2
    assert caller("INCR", ["n"], [3]) == 5


def test_one_connection_serves_calls_one_after_another(
    caller: ScriptCaller, redis_server: RedisServer
) -> None:
    for _ in range(20):
        caller("INCR", ["n"], [1])
    clients = redis_server.client().client_list()
    assert len(clients) == 2  # the caller's one connection, and this client


def test_a_flushed_script_cache_is_filled_again(
    caller: ScriptCaller, redis_server: RedisServer
) -> None:
    caller("INCR", ["n"], [1])
    redis_server.client().script_flush()
    assert caller("INCR", ["n"], [1]) == 2
    assert caller("INCR", ["n"], [1]) == 3


def test_an_idle_connection_closed_by_a_restart_is_connected_again(
    caller: ScriptCaller, redis_server: RedisServer
) -> None:
    caller("INCR", ["n"], [1])
    redis_server.stop()
    redis_server.start()  # empty, and every old socket closed
    assert caller("INCR", ["n"], [1]) == 1


def test_an_error_reply_raises_and_leaves_the_connection_usable(
    caller: ScriptCaller, redis_server: RedisServer
) -> None:
    with pytest.raises(redis.ResponseError, match="refused by the script"):
        caller("FAIL", ["n"])
    assert caller("INCR", ["n"], [1]) == 1
    assert len(redis_server.client().client_list()) == 2


def test_a_hung_server_times_out_and_its_connection_is_not_reused(
    caller: ScriptCaller, redis_server: RedisServer
) -> None:
    caller("INCR", ["n"], [1])
    admin = redis_server.client()
    admin.execute_command("CLIENT", "PAUSE", 1000, "ALL")  # type: ignore[no-untyped-call]
    with pytest.raises(redis.TimeoutError):
        caller("INCR", ["n"], [1])
    admin.execute_command("CLIENT", "UNPAUSE")  # type: ignore[no-untyped-call]
    reply = caller("INCR", ["n"], [10])
    assert reply == int(admin.get("n") or 0)  # this call's own reply, not the late one
    assert len(admin.client_list()) == 2  # the timed-out connection was closed


def test_threads_never_share_a_connection(caller: ScriptCaller) -> None:
    def work() -> None:
        for _ in range(200):
            caller("INCR", ["n"], [1])

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert caller("INCR", ["n"], [0]) == 800
