"""The seed's load case, and random sequences of events checked against the quota's rules."""

from __future__ import annotations

import threading
from collections.abc import Callable

import attrs
import hypothesis.strategies as st
from hypothesis import HealthCheck, settings
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    rule,
)

from actors.clock import ManualClock
from actors.context import UserExecutionContext
from actors.ports import Handle, Handler, QueuePort
from actors.tree import SupervisionTree, echo_handler
from supervisor.admin.metrics import MetricsObserver
from tests.helpers import actor_threads, connect, handle_of, make_config, wait_until


def test_1000_create_close_cycles_across_10_users_leave_0_managers_and_threads_at_baseline() -> (
    None
):
    baseline = threading.active_count()
    metrics = MetricsObserver()
    tree = SupervisionTree(make_config(), observer=metrics).start()
    errors: list[str] = []

    def user_loop(user_id: str) -> None:
        for _ in range(100):
            admission, _, _ = connect(tree, user_id)
            if not admission.admitted:
                errors.append(f"{user_id}: {admission.result}")
                return
            handle_of(admission).closed()

    workers = [threading.Thread(target=user_loop, args=(f"user{n}",)) for n in range(10)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(30)
    assert errors == []
    wait_until(lambda: tree.ledger.total() == 0, what="every slot free")
    users = tree.snapshot()["users"]
    assert sum(len(u["managers"]) for u in users) == 0
    assert metrics.value("ws_supervisor_admissions_total", {"result": "admitted"}) == 1000
    assert (
        metrics.value("ws_supervisor_cleanups_total", {"reason": "close", "result": "ok"}) == 1000
    )
    assert metrics.value("ws_supervisor_thread_id_mismatches_total") == 0
    tree.stop()
    wait_until(lambda: threading.active_count() == baseline, what="threads back at baseline")


def _crash_on_boom() -> Handler:
    def handler(context: UserExecutionContext, text: str, send: Callable[[str], None]) -> None:
        if text == "boom":
            raise RuntimeError("boom")
        echo_handler(context, text, send)

    return handler


@attrs.define
class Conn:
    user_id: str
    thread_id: str
    port: QueuePort
    handle: Handle

    @property
    def open(self) -> bool:
        return self.handle.is_open and not self.port.is_closed


USERS = ("u0", "u1")


class QuotaMachine(RuleBasedStateMachine):
    """Random acquire / close / crash / timeout / tick / supersede against the rules."""

    conns = Bundle("conns")

    def __init__(self) -> None:
        super().__init__()
        self.clock = ManualClock()
        self.metrics = MetricsObserver()
        self.tree: SupervisionTree | None = None
        self.all: list[Conn] = []

    @initialize(
        limit=st.integers(1, 4),
        policy=st.sampled_from(["reject", "evict_oldest_idle"]),
        pool=st.integers(0, 2),
        max_restarts=st.integers(0, 2),
    )
    def start(self, limit: int, policy: str, pool: int, max_restarts: int) -> None:
        config = make_config(
            {
                "quota": {"max_managers_per_user": limit, "policy": policy},
                "pool": {"size": pool},
                "restart": {"max_restarts": max_restarts},
                "timeouts": {"idle_timeout": 20.0},
            }
        )
        self.tree = SupervisionTree(
            config,
            clock=self.clock,
            observer=self.metrics,
            tick=False,
            handler_factory=_crash_on_boom,
        ).start()

    @property
    def t(self) -> SupervisionTree:
        assert self.tree is not None
        return self.tree

    def _settle(self) -> None:
        self.t.snapshot()

    @rule(target=conns, user=st.sampled_from(USERS), resume=st.integers(0, 5))
    def acquire(self, user: str, resume: int) -> list[Conn]:
        mine = [c for c in self.all if c.user_id == user]
        thread_id = mine[resume].thread_id if resume < len(mine) else None
        admission, port, ctx = connect(self.t, user, thread_id)
        if admission.handle is None:
            assert admission.result in ("rejected_quota", "rejected_node")
            return []
        conn = Conn(user, ctx.thread_id, port, admission.handle)
        self.all.append(conn)
        return [conn]

    @rule(conn=consumes(conns))
    def close(self, conn: list[Conn]) -> None:
        for c in conn:
            c.handle.closed()
        self._settle()

    @rule(conn=conns)
    def crash(self, conn: list[Conn]) -> None:
        for c in conn:
            if c.open:
                before = self.metrics.value("ws_supervisor_restarts_total")
                c.handle.deliver("boom")
                wait_until(self._restarted_or_closed(c, before))

    def _restarted_or_closed(self, conn: Conn, before: float) -> Callable[[], bool]:
        def done() -> bool:
            restarts = self.metrics.value("ws_supervisor_restarts_total")
            return conn.port.is_closed or restarts > before

        return done

    @rule(conn=conns)
    def timeout(self, conn: list[Conn]) -> None:
        for c in conn:
            c.handle.timed_out()
        self._settle()

    @rule(seconds=st.sampled_from([0.5, 5.0, 25.0]))
    def tick(self, seconds: float) -> None:
        self.clock.advance(seconds)
        self.t.tick()
        self._settle()

    @invariant()
    def the_quota_is_never_exceeded_and_nothing_is_mismatched(self) -> None:
        if self.tree is None:
            return
        limit = self.t.settings.quota.max_managers_per_user
        for user in USERS:
            assert self.t.ledger.usage(user) <= limit
            assert sum(1 for c in self.all if c.user_id == user and c.open) <= limit
        assert self.metrics.value("ws_supervisor_thread_id_mismatches_total") == 0

    def teardown(self) -> None:
        if self.tree is None:
            return
        for c in self.all:
            c.handle.closed()
        wait_until(lambda: self.t.ledger.total() == 0, what="0 slots after every close")
        wait_until(lambda: all(u["managers"] == [] for u in self.t.snapshot()["users"]))
        assert self.metrics.value("ws_supervisor_thread_id_mismatches_total") == 0
        self.tree.stop()
        wait_until(lambda: not actor_threads(), what=lambda: f"0 live threads: {actor_threads()}")


QuotaMachine.TestCase.settings = settings(
    max_examples=25,
    stateful_step_count=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_quota_rules_hold_under_random_sequences = QuotaMachine.TestCase
