"""Push from any node through Redis: two real supervision trees on one redis-server.

Each node is a tree on a RedisLedger with its cluster link (maintenance and
listener threads) and its ClusterPush, as in a daemon; connections are queue
ports admitted through the tree.
"""

from __future__ import annotations

import contextlib
import functools
import queue
import threading
from collections.abc import Iterator

import pytest

from actors.errors import InvalidIdError
from actors.messages import TakeBack
from actors.ports import QueuePort
from actors.tree import SupervisionTree
from supervisor.cluster.ledger import RedisLedger, connect
from supervisor.cluster.link import ClusterLink
from supervisor.cluster.push import ClusterPush
from supervisor.cluster.push_tally import PushTally
from supervisor.config.schema import RedisConfig
from tests.cluster.redis_server import RedisServer
from tests.helpers import connect as admit
from tests.helpers import make_config

pytestmark = pytest.mark.timeout(30)


class Node:
    """A tree, its ledger, its pushes and its cluster link, started."""

    def __init__(self, server: RedisServer, node_id: str) -> None:
        config = RedisConfig(url=server.url, lease_ttl=30.0, renew_interval=10.0)
        self.client = connect(config)
        self.ledger = RedisLedger(self.client, node_id, config, 100)
        settings = make_config({"quota": {"backend": "redis"}})
        self.tree = SupervisionTree(settings, ledger=self.ledger, node_id=node_id).start()
        deliver = functools.partial(self.tree.push_nowait, here=True)  # as the daemon does
        self.pushes = ClusterPush(self.ledger, self.client, deliver)
        self.link = ClusterLink(self.ledger, self.client, self._take_back, self.pushes).start()

    def _take_back(self, takeback: TakeBack) -> None:
        self.tree.take_back(takeback.user_id, takeback.websocket_id, takeback.reason)

    def admit(self, user: str, thread: str) -> QueuePort:
        admission, port, _ = admit(self.tree, user, thread)
        assert admission.admitted, admission
        return port

    def push(self, user: str, thread: str | None, text: str) -> PushTally:
        """Push from this node and wait until it settles (the test fails if it does not)."""
        settled: queue.SimpleQueue[PushTally] = queue.SimpleQueue()
        self.pushes.send(user, thread, text, settled.put)
        return settled.get(timeout=5)

    def stop(self) -> None:
        self.tree.stop()
        self.link.stop()
        self.client.close()


@pytest.fixture
def nodes(redis_server: RedisServer) -> Iterator[tuple[Node, Node, Node]]:
    made: list[Node] = []
    try:
        for name in ("node-a", "node-b", "node-c"):
            made.append(Node(redis_server, name))
        yield made[0], made[1], made[2]
    finally:
        for node in made:
            with contextlib.suppress(Exception):
                node.stop()


def test_a_push_reaches_the_users_connections_on_every_other_node_and_counts_them(
    nodes: tuple[Node, Node, Node],
) -> None:
    a, b, c = nodes
    on_b = [b.admit("alice", "t1"), b.admit("alice", "t2")]
    on_c = c.admit("alice", "t3")
    local = a.admit("alice", "t4")
    tally = a.push("alice", None, '{"n":1}')
    assert tally.confirmed == {"node-b": 2, "node-c": 1}
    assert tally.unreachable == [] and tally.waiting == set()
    for port in (*on_b, on_c):
        assert port.frames.get(timeout=2) == '{"n":1}'
    assert local.frames.empty()  # this node's own connections are the tree's to push to
    assert tally.answer("node-a", 1).delivered == 4


def test_a_push_to_a_thread_goes_only_to_the_node_that_holds_it(
    nodes: tuple[Node, Node, Node],
) -> None:
    a, b, c = nodes
    other = b.admit("alice", "t1")
    target = c.admit("alice", "t2")
    tally = a.push("alice", "t2", "7")
    assert tally.confirmed == {"node-c": 1}
    assert target.frames.get(timeout=2) == "7"
    with pytest.raises(queue.Empty):
        other.frames.get(timeout=0.2)


def test_a_push_for_a_user_no_other_node_holds_settles_at_once_with_nothing(
    nodes: tuple[Node, Node, Node],
) -> None:
    a, _, _ = nodes
    a.admit("alice", "t1")
    tally = a.push("alice", None, "1")
    assert (tally.confirmed, tally.unreachable, tally.failed) == ({}, [], None)


def test_a_node_whose_listener_is_gone_is_unreachable_at_once(
    nodes: tuple[Node, Node, Node],
) -> None:
    a, b, c = nodes
    b.admit("alice", "t1")
    c.admit("alice", "t2")
    b.link.stop()  # its channel has no subscriber; its slots stay in the ledger until they lapse
    tally = a.push("alice", None, "1")
    assert tally.unreachable == ["node-b"]
    assert tally.confirmed == {"node-c": 1}


def test_a_node_that_hears_the_push_but_never_answers_is_left_unconfirmed(
    nodes: tuple[Node, Node, Node],
) -> None:
    a, b, _ = nodes
    port = b.admit("alice", "t1")
    b.pushes.close()  # it still listens, and delivers, but its answer cannot be sent
    settled = threading.Event()
    push_id = a.pushes.send("alice", None, "1", lambda _: settled.set())
    assert port.frames.get(timeout=2) == "1"
    assert not settled.wait(0.5)
    tally = a.pushes.give_up(push_id)
    assert tally is not None and tally.waiting == {"node-b"}
    assert tally.answer("node-a", 0).unconfirmed == ("node-b",)
    assert a.pushes.give_up(push_id) is None  # given up once


def test_a_push_while_redis_is_down_settles_as_not_routed(
    nodes: tuple[Node, Node, Node], redis_server: RedisServer
) -> None:
    a, b, _ = nodes
    b.admit("alice", "t1")
    redis_server.stop()
    tally = a.push("alice", None, "1")
    assert tally.failed is not None and "Connection refused" in tally.failed
    assert tally.answer("node-a", 0).cluster == "unavailable"


def test_only_push_messages_are_taken_by_the_pushes(nodes: tuple[Node, Node, Node]) -> None:
    a, _, _ = nodes
    assert not a.pushes.heard(b"supersede\talice\talice:t1\tws_1")
    assert a.pushes.heard(b"pushack1\t999\tnode-b\t1")  # an answer to no push of ours: dropped


def test_a_push_to_a_bad_thread_id_is_refused_before_anything_is_sent(
    nodes: tuple[Node, Node, Node],
) -> None:
    a, _, _ = nodes
    with pytest.raises(InvalidIdError):
        a.pushes.send("alice", "t:1", "1", lambda _: None)
    assert a.pushes.give_up("1") is None  # no push was registered
