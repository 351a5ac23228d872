"""The ledger's Lua scripts: each one named, each one loaded and run in a real redis-server."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from supervisor.cluster import scripts
from tests.cluster.redis_server import RedisServer

pytestmark = pytest.mark.timeout(30)

KEYS = ["wss:{u}:slots", "wss:{u}:holders"]
PREFIX = "wss:node:"
TTL_MS = 60_000


class Scripts:
    """Every script loaded into one server, run by name with EVALSHA."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self.shas = {name: client.script_load(source) for name, source in scripts.BY_NAME.items()}

    def run(self, name: str, *args: Any, keys: list[str] = KEYS) -> Any:
        return self.client.evalsha(self.shas[name], len(keys), *keys, *args)

    def acquire(self, key: str, ws: str, limit: int = 2, evict: bool = False) -> Any:
        return self.run("ACQUIRE", key, "A", ws, limit, TTL_MS, int(evict), PREFIX, "u")


@pytest.fixture
def client(redis_server: RedisServer) -> Iterator[redis.Redis]:
    opened = redis_server.client()
    yield opened
    opened.close()


@pytest.fixture
def loaded(client: redis.Redis) -> Scripts:
    return Scripts(client)


def test_every_script_of_the_module_is_named_by_its_own_name_and_nothing_else_is() -> None:
    named = set(scripts.__all__) - {"BY_NAME"}
    assert set(scripts.BY_NAME) == named
    assert all(scripts.BY_NAME[name] is getattr(scripts, name) for name in named)


def test_every_script_loads_into_redis_under_the_sha1_of_its_source(client: redis.Redis) -> None:
    loaded = Scripts(client)
    for name, source in scripts.BY_NAME.items():
        assert loaded.shas[name] == hashlib.sha1(source.encode()).hexdigest(), name
    assert client.script_exists(*loaded.shas.values()) == [True] * len(scripts.BY_NAME)


def test_a_user_with_no_slot_has_no_usage_no_holder_and_no_key(
    loaded: Scripts, redis_server: RedisServer
) -> None:
    assert loaded.run("USAGE", keys=KEYS[:1]) == 0
    now, records, live = loaded.run("HOLDERS")
    assert now > 0 and (records, live) == ([], [])
    assert redis_server.keys() == []


def test_an_acquired_slot_is_counted_recorded_and_both_keys_live_one_lease(
    loaded: Scripts, client: redis.Redis
) -> None:
    status, acquired = loaded.acquire("u:1", "w1")
    assert status == b"acquired"
    assert loaded.run("USAGE", keys=KEYS[:1]) == 1
    now, records, live = loaded.run("HOLDERS")
    assert records == [b"u:1", f"A\tw1\t{acquired}".encode()]
    assert live == [b"u:1", str(acquired + TTL_MS).encode()]
    assert now >= acquired
    assert all(0 < client.pttl(key) <= TTL_MS for key in KEYS)


def test_a_release_frees_only_its_own_holder_s_slot_and_the_last_one_leaves_no_key(
    loaded: Scripts, redis_server: RedisServer
) -> None:
    loaded.acquire("u:1", "w1")
    assert loaded.run("RELEASE", "u:1", "A", "someone-else") == 0
    assert loaded.run("RELEASE", "u:1", "B", "w1") == 0  # the same websocket id, another node
    assert loaded.run("RELEASE", "u:1", "A", "w1") == 1
    assert loaded.run("RELEASE", "u:1", "A", "w1") == 0
    assert redis_server.keys() == []


def test_a_full_user_is_refused_or_its_oldest_slot_evicted_and_its_node_told(
    loaded: Scripts, client: redis.Redis
) -> None:
    loaded.acquire("u:1", "w1")
    loaded.acquire("u:2", "w2")
    assert loaded.acquire("u:3", "w3")[0] == b"user_full"
    listener = client.pubsub()
    listener.subscribe(PREFIX + "A")
    try:
        assert listener.get_message(timeout=2.0)["type"] == "subscribe"
        assert loaded.acquire("u:3", "w3", evict=True)[0] == b"evicted"
        assert loaded.acquire("u:2", "w9")[0] == b"superseded"
        told = [listener.get_message(timeout=2.0) for _ in range(2)]
    finally:
        listener.close()
    assert [m["data"] for m in told if m] == [b"evict\tu\tu:1\tw1", b"supersede\tu\tu:2\tw2"]
    assert sorted(client.hkeys(KEYS[1])) == [b"u:2", b"u:3"]


def test_a_transfer_hands_the_slot_to_the_new_holder_and_refuses_when_no_room_is_left(
    loaded: Scripts, client: redis.Redis
) -> None:
    loaded.acquire("u:1", "w1", limit=1)
    assert loaded.run("TRANSFER", "u:1", "A", "w1", "w2", 1, TTL_MS, PREFIX, "u") == 1
    record = client.hget(KEYS[1], "u:1")
    assert isinstance(record, bytes) and record.split(b"\t")[:2] == [b"A", b"w2"]
    assert loaded.run("TRANSFER", "u:9", "A", "w8", "w9", 1, TTL_MS, PREFIX, "u") == 0


def test_a_renewal_drops_what_the_node_no_longer_lists_and_registers_a_lost_slot_again(
    loaded: Scripts, client: redis.Redis
) -> None:
    loaded.acquire("u:1", "w1", limit=3)
    loaded.acquire("u:2", "w2", limit=3)
    superseded, expired, records = loaded.run(
        "RENEW", "A", TTL_MS, 3, "renew", "u:1", "w1", 5, "u:3", "w3", 7
    )
    assert (superseded, expired, records) == ([], [], [])
    holders: dict[bytes, bytes] = client.hgetall(KEYS[1])  # type: ignore[assignment]
    assert sorted(holders) == [b"u:1", b"u:3"]  # u:2 released meanwhile, u:3 lost and back
    assert holders[b"u:3"] == b"A\tw3\t7"
