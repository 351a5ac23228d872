"""Freeing every slot of a node that is gone (a dead worker), on a real redis-server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from supervisor.cluster import upkeep
from supervisor.cluster.ledger import RedisLedger, connect
from supervisor.cluster.upkeep import drop_node
from supervisor.config.schema import RedisConfig
from tests.cluster.redis_server import RedisServer

pytestmark = pytest.mark.timeout(30)

_made: list[RedisLedger] = []


@pytest.fixture(autouse=True)
def _close_ledgers() -> Iterator[None]:
    yield
    while _made:
        _made.pop().close()


def node(server: RedisServer, node_id: str, prefix: str = "wss") -> RedisLedger:
    config = RedisConfig(url=server.url, key_prefix=prefix)
    ledger = RedisLedger(connect(config), node_id, config, 100)
    _made.append(ledger)
    return ledger


def holders(ledger: RedisLedger, user_id: str) -> list[str]:
    return sorted(f"{slot['node_id']}/{slot['key']}" for slot in ledger.cluster_slots(user_id))


@pytest.mark.parametrize("listed", [True, False], ids=["users-listed", "users-scanned"])
def test_a_gone_node_s_slots_are_freed_and_no_other_node_s(
    redis_server: RedisServer, listed: bool
) -> None:
    dead, alive, stranger = (
        node(redis_server, "d-w1"),
        node(redis_server, "d-w0"),
        node(redis_server, "d-w1", prefix="other"),
    )
    for n in range(3):
        dead.acquire("alice", f"alice:{n}", f"ws{n}", 5)
    dead.acquire("bob", "bob:1", "ws9", 5)
    alive.acquire("bob", "bob:2", "ws8", 5)
    alive.acquire("carol", "carol:1", "ws7", 5)
    stranger.acquire("alice", "alice:x", "ws6", 5)  # another prefix: another cluster
    config = RedisConfig(url=redis_server.url)
    client = connect(config)
    try:
        users = ["alice", "bob", "nobody"] if listed else None
        assert drop_node(client, config, "d-w1", users) == 4
    finally:
        client.close()
    assert holders(alive, "alice") == []
    assert holders(alive, "bob") == ["d-w0/bob:2"]
    assert holders(alive, "carol") == ["d-w0/carol:1"]
    assert holders(stranger, "alice") == ["d-w1/alice:x"]
    assert redis_server.keys("wss:{alice}*") == []  # an emptied user leaves no key
    assert alive.usage("bob") == 1


def test_many_users_go_in_batches(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(upkeep, "_DROP_BATCH", 3)
    dead = node(redis_server, "gone")
    for n in range(10):
        dead.acquire(f"user{n}", f"user{n}:t", "ws", 5)
    config = RedisConfig(url=redis_server.url)
    client = connect(config)
    try:
        assert drop_node(client, config, "gone", [f"user{n}" for n in range(10)]) == 10
    finally:
        client.close()
    assert redis_server.keys("wss:*") == []
