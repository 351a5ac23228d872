"""Supervision trees on a RedisLedger: the actors' side of a shared quota."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from supervisor.config import RedisConfig
from supervisor.redis_ledger import RedisLedger, connect
from supervisor.tree import SupervisionTree
from tests.cluster.redis_server import RedisServer
from tests.helpers import connect as admit
from tests.helpers import handle_of, make_config, wait_until

pytestmark = pytest.mark.timeout(30)


def node_tree(server: RedisServer, node: str, policy: str) -> SupervisionTree:
    config = make_config(
        {"quota": {"backend": "redis", "max_managers_per_user": 2, "policy": policy}}
    )
    redis_config = RedisConfig(url=server.url, lease_ttl=60.0, renew_interval=20.0)
    ledger = RedisLedger(connect(redis_config), node, redis_config, 100)
    return SupervisionTree(config, ledger=ledger, node_id=node)


@pytest.fixture
def trees(redis_server: RedisServer) -> Iterator[dict[str, SupervisionTree]]:
    started = {
        "A": node_tree(redis_server, "A", "reject").start(),
        "C": node_tree(redis_server, "C", "evict_oldest_idle").start(),
    }
    try:
        yield started
    finally:
        for tree in started.values():
            tree.stop()


def test_a_user_full_across_nodes_is_refused_by_the_node_with_room(
    trees: dict[str, SupervisionTree],
) -> None:
    first, _, _ = admit(trees["C"], "u", "t1")
    second, _, _ = admit(trees["C"], "u", "t2")
    third, _, _ = admit(trees["A"], "u", "t3")
    assert (first.result, second.result) == ("admitted", "admitted")
    assert (third.result, third.reason) == ("rejected_quota", "quota_full")
    assert trees["A"].ledger.usage("u") == 2


def test_a_resume_on_a_slot_another_node_evicted_asks_for_a_slot_anew(
    trees: dict[str, SupervisionTree],
) -> None:
    old, old_port, _ = admit(trees["A"], "u", "t1")
    handle_of(old)
    admit(trees["C"], "u", "t2")
    evicting, _, _ = admit(trees["C"], "u", "t3")  # the oldest slot, A's, goes
    assert evicting.result == "evicted"
    # A has not heard yet (no cluster link here); the thread comes back on A:
    resumed, _, _ = admit(trees["A"], "u", "t1")
    assert (resumed.result, resumed.reason) == ("rejected_quota", "quota_full")
    wait_until(lambda: old_port.close_code == 4001, what="the old connection closed")
    assert trees["A"].ledger.usage("u") == 2
    assert trees["A"].ledger.total() == 0  # nothing uncounted is left on A


def test_a_tree_on_a_shared_ledger_lets_several_users_wait_on_redis_at_once(
    trees: dict[str, SupervisionTree],
) -> None:
    assert trees["A"].ledger.shared is True
    assert trees["A"].system_dispatcher.workers == 8
    assert SupervisionTree(make_config()).system_dispatcher.workers == 1
