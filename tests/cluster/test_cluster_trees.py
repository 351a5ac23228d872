"""Supervision trees on a RedisLedger: the actors' side of a shared quota."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from actors.context import UserExecutionContext
from actors.messages import GetSnapshot
from actors.observer import NullObserver
from actors.ports import Admission, AdmissionTicket, QueuePort
from actors.tree import SupervisionTree
from supervisor.cluster.ledger import RedisLedger, connect
from supervisor.config.schema import RedisConfig
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
            assert isinstance(tree.ledger, RedisLedger)
            tree.ledger.close()


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


@contextlib.contextmanager
def patient_tree(server: RedisServer, quota: int = 20) -> Iterator[SupervisionTree]:
    """One node whose Redis calls wait up to 3 s; stopped, its releases sent, after use."""
    config = make_config({"quota": {"backend": "redis", "max_managers_per_user": quota}})
    redis_config = RedisConfig(url=server.url, timeout=3.0)
    ledger = RedisLedger(connect(redis_config), "A", redis_config, 100)
    tree = SupervisionTree(config, ledger=ledger, node_id="A").start()
    try:
        yield tree
    finally:
        tree.stop()
        assert ledger.flush()
        ledger.close()


def pause_redis(server: RedisServer, ms: int) -> None:
    server.client().execute_command("CLIENT", "PAUSE", ms, "ALL")  # type: ignore[no-untyped-call]


def admit_later(tree: SupervisionTree, user: str, thread: str, **kw: Any) -> AdmissionTicket:
    context = UserExecutionContext.from_websocket_request(user, thread)
    return tree.admit_nowait(context, QueuePort(), **kw)


def test_admissions_waiting_on_a_slow_redis_hold_up_no_other_user(
    redis_server: RedisServer,
) -> None:
    with patient_tree(redis_server) as tree:
        admit(tree, "bystander", "t0")  # its supervisor is up
        bystander = tree.supervisors()["bystander"]
        pause_redis(redis_server, 800)
        # more users than the supervisors have workers
        tickets = [admit_later(tree, f"u{n}", "t") for n in range(4)]
        time.sleep(0.2)  # the four admissions reach their supervisors, and Redis
        bystander.ask(GetSnapshot(), timeout=0.4)  # answered while all four wait on Redis
        assert all(ticket.wait(0) is None for ticket in tickets)
        answers = [ticket.wait(5) for ticket in tickets]
        assert all(a is not None and a.result == "admitted" for a in answers)
        assert tree.ledger.usage("u0") == 1


def test_one_user_s_admissions_are_answered_in_order_while_redis_is_slow(
    redis_server: RedisServer,
) -> None:
    order: list[tuple[str, str]] = []

    def answered(n: int) -> Callable[[Admission], None]:
        return lambda admission: order.append((f"t{n}", admission.result))

    with patient_tree(redis_server, quota=2) as tree:
        pause_redis(redis_server, 300)
        tickets = [admit_later(tree, "u", f"t{n}", on_answer=answered(n)) for n in range(3)]
        assert all(ticket.wait(5) is not None for ticket in tickets)
        assert order == [("t0", "admitted"), ("t1", "admitted"), ("t2", "rejected_quota")]
        assert tree.ledger.usage("u") == 2


def test_a_tree_stopped_while_an_admission_waits_on_redis_leaves_no_slot_in_redis(
    redis_server: RedisServer,
) -> None:
    with patient_tree(redis_server) as tree:
        admit(tree, "u", "t0")
        pause_redis(redis_server, 300)
        admit_later(tree, "u", "t1")
        time.sleep(0.1)  # the admission reaches its supervisor, and Redis
    assert tree.ledger.total() == 0
    assert redis_server.keys("wss:*") == []


class ReleaseThreads(NullObserver):
    """An observer that notes the thread each slot release runs on."""

    def __init__(self) -> None:
        self.threads: list[str] = []

    def release_latency(self, seconds: float) -> None:
        self.threads.append(threading.current_thread().name)


def test_on_a_shared_ledger_admissions_and_closes_never_run_on_the_calling_thread(
    redis_server: RedisServer,
) -> None:
    config = make_config({"quota": {"backend": "redis"}})
    redis_config = RedisConfig(url=redis_server.url, lease_ttl=60.0, renew_interval=20.0)
    ledger = RedisLedger(connect(redis_config), "A", redis_config, 100)
    releases = ReleaseThreads()
    tree = SupervisionTree(config, ledger=ledger, node_id="A", observer=releases).start()
    try:
        ticket = tree.admit_nowait(UserExecutionContext.from_websocket_request("u"), QueuePort())
        admission = ticket.wait(5)
        assert admission is not None and admission.admitted
        handle_of(admission).closed(1000)
        wait_until(lambda: releases.threads != [], what="the slot released")
        assert releases.threads[0].startswith("ws-supervisor-system")
    finally:
        tree.stop()
        ledger.close()
