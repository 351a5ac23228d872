"""Three RedisLedger nodes on one real redis-server, checked against a model of the slots.

- a stateful test: random acquire / release / transfer / renew on nodes A, B and C
  for two users, after every step the cluster count, Redis's slots and each
  node's own book against a plain-Python model;
- threads on three nodes hammering one user's quota while a sampler reads the
  live count in Redis;
- a node that stops renewing loses its slots within one lease.
"""

from __future__ import annotations

import itertools
import random
import threading
import time
from collections.abc import Iterator

import attrs
import hypothesis.strategies as st
import pytest
import redis
from hypothesis import HealthCheck, settings
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    rule,
    run_state_machine_as_test,
)

from actors.messages import TakeBack
from actors.policies.ledger import AcquireResult, PendingAcquire
from supervisor.cluster.ledger import RedisLedger, connect
from supervisor.config.schema import RedisConfig
from tests.cluster.redis_server import RedisServer
from tests.helpers import wait_until

NODES = ("A", "B", "C")
USERS = ("u0", "u1")
THREADS = tuple(f"t{i}" for i in range(6))
LIMIT = 3
NODE_LIMIT = 1000
THREAD_PREFIX = "ledger-model-"


def _node(client: redis.Redis, node_id: str, config: RedisConfig) -> RedisLedger:
    return RedisLedger(client, node_id, config, NODE_LIMIT)


def _slots(ledger: RedisLedger, user_id: str) -> dict[str, tuple[str, str, int]]:
    """Redis's live slots of a user: key -> (node, websocket id, acquired_ms)."""
    return {
        s["key"]: (s["node_id"], s["websocket_id"], s["acquired_ms"])
        for s in ledger.cluster_slots(user_id)
    }


def _acquire_later(
    ledger: RedisLedger, user: str, key: str, holder: str, evict: bool
) -> AcquireResult:
    """An admission that does not wait: begun, answered on the link's thread, then taken."""
    answered = threading.Event()
    answer = ledger.begin_acquire(
        user, key, holder, LIMIT, evict=evict, notify=lambda _: answered.set()
    )
    while isinstance(answer, PendingAcquire):
        assert answered.wait(5), "no answer came"
        answered.clear()
        answer = ledger.end_acquire(answer)
    return answer


@pytest.fixture
def no_thread_left_behind() -> Iterator[None]:
    """Fail the test if a thread it started is still alive after it."""
    yield
    left = [t.name for t in threading.enumerate() if t.name.startswith(THREAD_PREFIX)]
    assert left == [], f"threads left behind: {left}"


# --- the model ------------------------------------------------------------------------


@attrs.frozen
class Slot:
    node: str
    holder: str
    since: int
    """acquired_ms as Redis stamped it (the server's clock: the model cannot know it)."""


class LedgerMachine(RuleBasedStateMachine):
    """The ledgers of nodes A, B and C against a model of Redis and of each node's book.

    ``redis[user][key]`` is the slot Redis must hold; ``books[node][user][key]``
    the holder that node's book must list. A book may list a key that Redis
    gave to another connection (superseded or evicted from another call): the
    node keeps it until its connection is taken back and released.
    """

    url = ""

    def __init__(self) -> None:
        super().__init__()
        config = RedisConfig(url=self.url, lease_ttl=60.0, renew_interval=20.0, timeout=2.0)
        self.admin = redis.Redis.from_url(self.url)
        self.admin.flushall()
        self.pubsub = self.admin.pubsub()
        self.pubsub.psubscribe("wss:node:*")  # every node's channel: who is told to close what
        while (message := self.pubsub.get_message(timeout=2.0)) is None or (
            message["type"] != "psubscribe"
        ):
            pass
        self.clients = {node: connect(config) for node in NODES}
        self.ledgers = {node: _node(self.clients[node], node, config) for node in NODES}
        self.redis: dict[str, dict[str, Slot]] = {user: {} for user in USERS}
        self.books: dict[str, dict[str, dict[str, str]]] = {
            node: {user: {} for user in USERS} for node in NODES
        }
        self.ids = itertools.count()
        self.checks = 0

    def teardown(self) -> None:
        for ledger in self.ledgers.values():
            ledger.close()
        for client in self.clients.values():
            client.close()
        self.pubsub.close()
        self.admin.flushall()
        self.admin.close()

    # --- helpers ----------------------------------------------------------------------

    def _stamp(self, user: str, key: str) -> int:
        return _slots(self.ledgers["A"], user)[key][2]

    def _entries(self) -> list[tuple[str, str, str, str]]:
        """Every (node, user, key, holder) some node's book lists, in a stable order."""
        return [
            (node, user, key, holder)
            for node in NODES
            for user in USERS
            for key, holder in sorted(self.books[node][user].items())
        ]

    def _told(self, *expected: tuple[str, str, str, str, str]) -> None:
        """The nodes were told exactly this: (node, op, user, key, websocket id) each."""
        heard = []
        for _ in expected:
            message = self.pubsub.get_message(timeout=2.0)
            assert message is not None and message["type"] == "pmessage", message
            node = message["channel"].decode().rsplit(":", 1)[1]
            heard.append((node, *message["data"].decode().split("\t")))
        assert sorted(heard) == sorted(expected)
        assert self.pubsub.get_message(timeout=0.0) is None

    def _draw_entry(self, data: st.DataObject) -> tuple[str, str, str, str] | None:
        entries = self._entries()
        return data.draw(st.sampled_from(entries)) if entries else None

    def _taken_away(self, node: str, user: str) -> dict[str, str]:
        """The book entries of ``node`` whose slot Redis no longer gives to them."""
        live = self.redis[user]
        return {
            key: holder
            for key, holder in self.books[node][user].items()
            if key not in live or (live[key].node, live[key].holder) != (node, holder)
        }

    # --- rules ------------------------------------------------------------------------

    @rule(
        node=st.sampled_from(NODES),
        user=st.sampled_from(USERS),
        thread=st.sampled_from(THREADS),
        evict=st.booleans(),
        wait=st.booleans(),
    )
    def acquire(self, node: str, user: str, thread: str, evict: bool, wait: bool) -> None:
        """Waiting for Redis (``acquire``) or not (``begin_acquire``, as a supervisor does)."""
        key, holder = f"{user}:{thread}", f"{node}-ws{next(self.ids)}"
        if wait:
            result = self.ledgers[node].acquire(user, key, holder, LIMIT, evict)
        else:
            result = _acquire_later(self.ledgers[node], user, key, holder, evict)
        live = self.redis[user]
        told = []
        if key in live:
            expected = AcquireResult.SUPERSEDED
            told.append((live[key].node, "supersede", user, key, live[key].holder))
        elif len(live) < LIMIT:
            expected = AcquireResult.ACQUIRED
        elif not evict:
            expected = AcquireResult.USER_FULL
        else:
            expected = AcquireResult.EVICTED
            victim = min(live, key=lambda k: (live[k].since, k))  # oldest, then by key
            told.append((live[victim].node, "evict", user, victim, live[victim].holder))
            del live[victim]
        assert result is expected, (node, key, evict, dict(live))
        if expected is not AcquireResult.USER_FULL:
            live[key] = Slot(node, holder, self._stamp(user, key))
            self.books[node][user].pop(key, None)  # the book lists it anew, last
            self.books[node][user][key] = holder
        self._told(*told)

    @rule(data=st.data())
    def release_a_listed_holder(self, data: st.DataObject) -> None:
        """Release by the node whose book lists the holder (live or taken away)."""
        if (entry := self._draw_entry(data)) is None:
            return
        node, user, key, holder = entry
        assert self.ledgers[node].release(user, key, holder) is True
        assert self.ledgers[node].flush()  # a release does not wait: the model is sequential
        del self.books[node][user][key]
        slot = self.redis[user].get(key)
        if slot is not None and (slot.node, slot.holder) == (node, holder):
            del self.redis[user][key]

    @rule(
        node=st.sampled_from(NODES),
        user=st.sampled_from(USERS),
        thread=st.sampled_from(THREADS),
        data=st.data(),
    )
    def release_a_holder_the_node_does_not_list(
        self, node: str, user: str, thread: str, data: st.DataObject
    ) -> None:
        """An unknown websocket id, or one another node lists: nothing changes."""
        key = f"{user}:{thread}"
        others = [h for n in NODES if n != node for h in self.books[n][user].values()]
        holder = data.draw(st.sampled_from([f"{node}-unknown", *others]))
        if self.books[node][user].get(key) == holder:
            return
        assert self.ledgers[node].release(user, key, holder) is False

    @rule(data=st.data())
    def transfer(self, data: st.DataObject) -> None:
        """A thread's new connection on the node whose book lists its old one."""
        if (entry := self._draw_entry(data)) is None:
            return
        node, user, key, old = entry
        new = f"{node}-ws{next(self.ids)}"
        live = self.redis[user]
        slot = live.get(key)
        if slot is None and len(live) >= LIMIT:
            # the old slot was taken away and no room is left: refused, and the
            # book drops the key (the supervisor then asks for a slot anew)
            assert self.ledgers[node].transfer(user, key, old, new) is False
            del self.books[node][user][key]
            return
        assert self.ledgers[node].transfer(user, key, old, new) is True
        self.books[node][user][key] = new
        live[key] = Slot(node, new, self._stamp(user, key))
        if slot is not None and (slot.node, slot.holder) != (node, old):
            # another node's: the newest connection wins
            self._told((slot.node, "supersede", user, key, slot.holder))

    @rule(
        node=st.sampled_from(NODES),
        user=st.sampled_from(USERS),
        thread=st.sampled_from(THREADS),
    )
    def transfer_from_a_holder_the_node_does_not_list(
        self, node: str, user: str, thread: str
    ) -> None:
        key = f"{user}:{thread}"
        assert self.ledgers[node].transfer(user, key, f"{node}-unknown", "never") is False

    def _renewed(self, node: str, user: str) -> set[tuple[str, str, str]]:
        """A renewal of ``user``'s slots on ``node``: the model's slots after it, and the
        (user, websocket id, reason) of each connection the node must take back."""
        live, takebacks = self.redis[user], set()
        for key, holder in self.books[node][user].items():  # in the book's order
            slot = live.get(key)
            if slot is None and len(live) < LIMIT:  # lost, and room: registered again
                live[key] = Slot(node, holder, self._stamp(user, key))
            elif slot is None:
                takebacks.add((user, holder, "evict"))
            elif (slot.node, slot.holder) != (node, holder):
                takebacks.add((user, holder, "supersede"))
        return takebacks

    @rule(node=st.sampled_from(NODES))
    def renew_all(self, node: str) -> None:
        """Every slot of the node's book: held, registered again, or taken back."""
        takebacks = self.ledgers[node].renew_all()
        expected = set().union(*(self._renewed(node, user) for user in USERS))
        assert all(isinstance(t, TakeBack) for t in takebacks)
        assert {(t.user_id, t.websocket_id, t.reason) for t in takebacks} == expected
        assert len(takebacks) == len(expected)

    @rule(data=st.data())
    def renew_one(self, data: st.DataObject) -> None:
        """Renewing one slot renews every slot of the user on that node."""
        if (entry := self._draw_entry(data)) is None:
            return
        node, user, key, holder = entry
        assert self.ledgers[node].renew(user, key, holder) is True
        self._renewed(node, user)

    @rule(node=st.sampled_from(NODES), user=st.sampled_from(USERS))
    def renew_a_holder_the_node_does_not_list(self, node: str, user: str) -> None:
        assert self.ledgers[node].renew(user, f"{user}:t0", f"{node}-unknown") is False

    @rule(node=st.sampled_from(NODES), user=st.sampled_from(USERS))
    def release_user(self, node: str, user: str) -> None:
        freed = self.ledgers[node].release_user(user)
        assert self.ledgers[node].flush()
        assert freed == len(self.books[node][user])
        self.books[node][user] = {}
        live = self.redis[user]
        for key in [k for k, slot in live.items() if slot.node == node]:
            del live[key]

    # --- invariants -------------------------------------------------------------------

    @invariant()
    def redis_and_every_book_agree_with_the_model(self) -> None:
        """Redis holds the model's slots; each book is Redis's view of its node plus
        what another call took away from it."""
        self.checks += 1
        assert self.pubsub.get_message(timeout=0.0) is None, "a node was told something unexpected"
        for user in USERS:
            found = _slots(self.ledgers["A"], user)
            expected = {k: (s.node, s.holder, s.since) for k, s in self.redis[user].items()}
            assert found == expected, user
            assert len(found) <= LIMIT
            asking = NODES[self.checks % len(NODES)]  # the same script on each node: rotate
            assert self.ledgers[asking].usage(user) == len(expected), (asking, user)
            for node in NODES:
                book = self.ledgers[node].holders(user)
                assert book == self.books[node][user], (node, user)
                mine = {k: ws for k, (n, ws, _) in found.items() if n == node}
                assert mine.items() <= book.items(), (node, user)
                gone = {k: ws for k, ws in book.items() if mine.get(k) != ws}
                assert gone == self._taken_away(node, user), (node, user)
        for node in NODES:
            assert self.ledgers[node].total() == sum(len(b) for b in self.books[node].values())
            assert self.ledgers[node].available


@pytest.mark.timeout(60)
def test_three_nodes_keep_the_slots_the_model_predicts(redis_server: RedisServer) -> None:
    class Machine(LedgerMachine):
        url = redis_server.url

    run_state_machine_as_test(
        Machine,
        settings=settings(
            max_examples=80,
            stateful_step_count=40,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
    assert redis_server.keys("wss:*") == []


# --- threads on three nodes -------------------------------------------------------------


@pytest.mark.timeout(30)
def test_threads_on_three_nodes_never_take_more_than_the_user_s_limit(
    redis_server: RedisServer, no_thread_left_behind: None
) -> None:
    limit, user, seconds = 5, "hammered", 3.0
    config = RedisConfig(url=redis_server.url, lease_ttl=60.0, renew_interval=20.0, timeout=2.0)
    clients = [connect(config) for _ in NODES]
    ledgers = [_node(client, node, config) for client, node in zip(clients, NODES, strict=True)]
    slots_key = ledgers[0].user_keys(user)[0]
    stop = threading.Event()
    counts: list[int] = []
    results: list[AcquireResult] = []
    errors: list[BaseException] = []

    def sample() -> None:
        client = redis_server.client()
        try:
            while not stop.is_set():
                counts.append(int(client.zcard(slots_key)))
        finally:
            client.close()

    def hammer(ledger: RedisLedger, index: int, seed: int) -> None:
        # one user supervisor per node writes a key: threads of a node share no key,
        # the same index on every node shares them (a thread resumed on another node)
        rng = random.Random(seed)
        keys = [f"{user}:t{index}-{j}" for j in range(3)]
        deadline = time.monotonic() + seconds
        try:
            for n in itertools.count():
                if time.monotonic() > deadline:
                    break
                key, holder = rng.choice(keys), f"{ledger.node_id}-{index}-{n}"
                result = ledger.acquire(user, key, holder, limit, evict=rng.random() < 0.3)
                results.append(result)
                if result is AcquireResult.USER_FULL:
                    continue
                if rng.random() < 0.2:
                    old, holder = holder, holder + "-resumed"
                    if not ledger.transfer(user, key, old, holder):
                        continue  # evicted meanwhile and no room left: nothing is held

                time.sleep(rng.random() * 0.002)
                assert ledger.release(user, key, holder)
        except BaseException as exc:
            errors.append(exc)

    sampler = threading.Thread(target=sample, name=THREAD_PREFIX + "sampler")
    workers = [
        threading.Thread(
            target=hammer, args=(ledger, index, 100 * n + index), name=f"{THREAD_PREFIX}{n}-{index}"
        )
        for n, ledger in enumerate(ledgers)
        for index in range(3)
    ]
    sampler.start()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(seconds + 10)
    stop.set()
    sampler.join(5)
    try:
        assert errors == []
        assert not any(worker.is_alive() for worker in workers) and not sampler.is_alive()
        assert max(counts) == limit, "the sampler never saw the user at the limit"
        assert len(counts) > 100
        seen = set(results)
        assert AcquireResult.USER_FULL in seen and AcquireResult.ACQUIRED in seen
        assert seen <= {
            AcquireResult.ACQUIRED,
            AcquireResult.SUPERSEDED,
            AcquireResult.EVICTED,
            AcquireResult.USER_FULL,
        }
        assert all(ledger.available and ledger.total() == 0 for ledger in ledgers)
        assert all(ledger.flush() for ledger in ledgers)  # the last releases are sent
        assert ledgers[0].usage(user) == 0
        assert redis_server.keys("wss:*") == []
    finally:
        for ledger in ledgers:
            ledger.close()
        for client in clients:
            client.close()


# --- leases -----------------------------------------------------------------------------


@pytest.mark.timeout(30)
def test_a_node_that_stops_renewing_loses_its_slots_within_one_lease(
    redis_server: RedisServer, no_thread_left_behind: None
) -> None:
    ttl, user = 1.0, "leased"
    config = RedisConfig(url=redis_server.url, lease_ttl=ttl, renew_interval=0.3, timeout=2.0)
    gone, stays = connect(config), connect(config)
    a, b = _node(gone, "A", config), _node(stays, "B", config)
    try:
        for n in range(LIMIT):
            assert a.acquire(user, f"{user}:t{n}", f"A-ws{n}", LIMIT) is AcquireResult.ACQUIRED
        assert b.acquire(user, f"{user}:tb", "B-ws0", LIMIT) is AcquireResult.USER_FULL

        stop = threading.Event()
        renewed: list[float] = []

        def renew() -> None:
            while True:
                renewed.append(time.monotonic())
                assert a.renew_all() == []
                if stop.wait(config.renew_interval):
                    return

        renewer = threading.Thread(target=renew, name=THREAD_PREFIX + "renewer")
        renewer.start()
        time.sleep(2 * ttl)  # two leases: only the renewals keep the slots
        assert b.usage(user) == LIMIT
        assert b.acquire(user, f"{user}:tb", "B-ws0", LIMIT) is AcquireResult.USER_FULL
        stop.set()
        renewer.join(5)
        assert not renewer.is_alive()
        gone.close()  # node A is gone: it renews nothing any more
        last = renewed[-1]

        wait_until(lambda: b.usage(user) == 0, timeout=ttl + 1.0, what="A's slots expired")
        assert time.monotonic() - last >= ttl - 0.01, "a slot expired before its lease ran out"
        wait_until(lambda: redis_server.keys("wss:*") == [], timeout=1.0, what="A's keys gone")
        for n in range(LIMIT):
            key = f"{user}:tb{n}"
            assert b.acquire(user, key, f"B-ws{n}", LIMIT) is AcquireResult.ACQUIRED
        assert b.usage(user) == LIMIT
        assert {s["node_id"] for s in b.cluster_slots(user)} == {"B"}
        for n in range(LIMIT):
            assert b.release(user, f"{user}:tb{n}", f"B-ws{n}")
        assert b.flush()
        assert redis_server.keys("wss:*") == []
    finally:
        a.close()
        b.close()
        gone.close()
        stays.close()
