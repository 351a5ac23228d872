"""The user supervisor actor: reports, closes, crashes, shedding, pool expiry and shutdown."""

from __future__ import annotations

from collections.abc import Callable

import attrs
import pykka
import pytest

from actors._runtime.dispatch import Dispatcher
from actors.clock import ManualClock
from actors.codes import ServerCloseCode
from actors.context import UserExecutionContext
from actors.manager import ManagerActor
from actors.messages import (
    Admit,
    ChildFailed,
    ConnectionClosed,
    Crash,
    Shed,
    SupervisorFailed,
    Tick,
    UsageReport,
)
from actors.settings import PoolConfig, QuotaConfig, RestartConfig, RestartType, Settings
from actors.tree import echo_handler
from supervisor.admin.metrics import MetricsObserver
from tests.actors.probes import (
    Blocker,
    SupervisorRig,
    admit_message,
    asleep,
    make_runtime,
    ticket_answer,
)
from tests.helpers import wait_until

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def rig(
    managers: Dispatcher, system: Dispatcher, clock: ManualClock, metrics: MetricsObserver
) -> SupervisorRig:
    return SupervisorRig(make_runtime(clock, metrics, managers, system))


def managers_alive() -> int:
    return sum(ref.is_alive() for ref in pykka.ActorRegistry.get_by_class(ManagerActor))


def test_a_turn_of_many_admissions_sends_the_root_one_usage_report(
    rig: SupervisorRig, system: Dispatcher
) -> None:
    release = Blocker.hold(system)  # the one system worker waits: admissions queue up
    tickets = []
    for _ in range(3):
        context, port, ticket = admit_message("alice")
        rig.ref.tell(Admit(context, port, ticket))
        tickets.append(ticket)
    release.set()
    assert [ticket_answer(t).result for t in tickets] == ["admitted"] * 3
    report = rig.root.next(UsageReport)
    assert (report.user_id, report.used, report.admits_seen) == ("alice", 3, 3)
    assert report.limit == rig.runtime.quota.limit
    now = rig.runtime.clock.monotonic()
    rig.ref.tell(Tick(now))  # a sweep: the wake time moves, so a report
    assert rig.root.next(UsageReport).wake_at > now
    rig.ref.tell(Tick(now))  # nothing due, nothing changes: no report
    rig.snapshot()
    asleep(rig.ref)
    assert rig.root.settle() == []


def test_a_close_frees_the_slot_and_retires_the_manager_to_the_pool(
    rig: SupervisorRig, metrics: MetricsObserver
) -> None:
    _, _, handle = rig.connect()
    assert rig.runtime.ledger.usage("alice") == 1
    handle.closed(1000)
    rig.report_where(lambda r: r.used == 0 and r.pool_idle == 1)
    assert rig.runtime.ledger.usage("alice") == 0
    assert rig.snapshot()["managers"] == []
    assert metrics.value("ws_supervisor_cleanups_total", {"reason": "close", "result": "ok"}) == 1
    assert metrics.value("ws_supervisor_release_latency_seconds_count") == 1


def test_a_close_of_an_unknown_connection_is_a_mismatch_but_a_late_repeat_is_not(
    rig: SupervisorRig, metrics: MetricsObserver, clock: ManualClock
) -> None:
    context, _, handle = rig.connect()
    handle.closed()
    rig.ref.tell(ConnectionClosed(context.websocket_id, clock.monotonic()))  # a late repeat
    rig.snapshot()
    assert metrics.value("ws_supervisor_thread_id_mismatches_total") == 0
    rig.ref.tell(ConnectionClosed("ws_never_admitted", clock.monotonic()))
    rig.snapshot()
    assert metrics.value("ws_supervisor_thread_id_mismatches_total") == 1


def test_a_failure_report_from_a_manager_no_longer_serving_is_ignored(
    rig: SupervisorRig, metrics: MetricsObserver
) -> None:
    context, port, handle = rig.connect()
    rig.ref.tell(ChildFailed(context.websocket_id, "urn:uuid:a-stale-manager", "old news"))
    handle.deliver("still served")
    assert port.frames.get(timeout=2) == "still served"
    (manager,) = rig.snapshot()["managers"]
    assert manager["restarts"] == 0 and not port.is_closed
    assert metrics.value("ws_supervisor_restarts_total") == 0


def crash_on_boom(context: UserExecutionContext, text: str, send: Callable[[str], None]) -> None:
    if text == "boom":
        raise RuntimeError("boom")
    echo_handler(context, text, send)


RESTART_CASES: list[tuple[RestartType, bool]] = [("temporary", False), ("transient", True)]


@pytest.mark.parametrize("case", RESTART_CASES, ids=lambda case: case[0])
def test_a_crashed_manager_is_restarted_unless_its_restart_type_is_temporary(
    managers: Dispatcher,
    system: Dispatcher,
    clock: ManualClock,
    metrics: MetricsObserver,
    case: tuple[RestartType, bool],
) -> None:
    restart_type, restarted = case
    settings = Settings(restart=RestartConfig(type=restart_type))
    runtime = make_runtime(
        clock, metrics, managers, system, settings=settings, handler_factory=lambda: crash_on_boom
    )
    rig = SupervisorRig(runtime)
    _, port, handle = rig.connect()
    handle.deliver("boom")
    if restarted:
        wait_until(lambda: metrics.value("ws_supervisor_restarts_total") == 1, what="restart")
        handle.deliver("again")
        assert port.frames.get(timeout=2) == "again"
    else:
        assert port.wait_closed(2) == ServerCloseCode.INTERNAL_ERROR
        rig.snapshot()
        assert runtime.ledger.usage("alice") == 0
        assert metrics.value("ws_supervisor_restarts_total") == 0


def test_a_crashed_supervisor_hands_its_connections_and_idle_managers_to_the_root(
    rig: SupervisorRig,
) -> None:
    context, port, _ = rig.connect()
    _, _, closing = rig.connect()
    closing.closed()
    rig.report_where(lambda r: r.pool_idle == 1)
    rig.ref.tell(Crash("on purpose"))
    failed = rig.root.take(SupervisorFailed)
    assert (failed.user_id, failed.actor_urn) == ("alice", rig.ref.actor_urn)
    (orphan,) = failed.orphans
    assert (orphan.context, orphan.port, orphan.holds_slot) == (context, port, True)
    assert orphan.manager is not None and orphan.manager.is_alive()
    assert len(failed.idle_managers) == 1
    assert not port.is_closed  # closing it is the root's work


def test_shedding_closes_the_idlest_connections_with_4002_until_keep_remain(
    rig: SupervisorRig, clock: ManualClock
) -> None:
    ports = []
    for _ in range(3):
        ports.append(rig.connect()[1])
        clock.advance(10.0)
    rig.ref.tell(Shed(keep=1, min_idle=5.0))
    assert [p.wait_closed(2) for p in ports[:2]] == [ServerCloseCode.EVICTED] * 2
    rig.snapshot()
    assert not ports[2].is_closed
    assert rig.runtime.ledger.usage("alice") == 1


def test_a_pooled_manager_is_stopped_once_it_has_idled_its_time(
    rig: SupervisorRig, clock: ManualClock
) -> None:
    _, _, handle = rig.connect()
    handle.closed()
    rig.report_where(lambda r: r.pool_idle == 1)
    pooled_at = clock.monotonic()
    idle_seconds = rig.runtime.settings.pool.idle_seconds
    rig.ref.tell(Tick(pooled_at + idle_seconds - 0.1))
    assert rig.snapshot()["pool_idle"] == 1
    rig.ref.tell(Tick(pooled_at + idle_seconds))
    assert rig.snapshot()["pool_idle"] == 0
    wait_until(lambda: managers_alive() == 0, what="the expired manager stopped")


def test_a_new_runtime_applies_its_quota_to_the_next_admission(rig: SupervisorRig) -> None:
    limit = rig.runtime.quota.limit
    for _ in range(limit):
        rig.connect()
    assert ticket_answer(rig.admit()[2]).result == "rejected_quota"
    settings = attrs.evolve(
        rig.runtime.settings, quota=QuotaConfig(max_managers_per_user=limit + 1)
    )
    rig.ref.tell(attrs.evolve(rig.runtime, settings=settings))
    assert rig.report_where(lambda r: r.limit == limit + 1).used == limit
    assert ticket_answer(rig.admit()[2]).admitted


def test_a_stopped_supervisor_closes_with_1001_frees_every_slot_and_stops_its_managers(
    managers: Dispatcher, system: Dispatcher, clock: ManualClock, metrics: MetricsObserver
) -> None:
    settings = Settings(pool=PoolConfig(size=2))
    rig = SupervisorRig(make_runtime(clock, metrics, managers, system, settings=settings))
    ports = [rig.connect()[1] for _ in range(2)]
    _, _, pooled = rig.connect()
    pooled.closed()
    rig.report_where(lambda r: r.pool_idle == 1)
    rig.ref.stop(timeout=5)
    assert [p.close_code for p in ports] == [ServerCloseCode.GOING_AWAY] * 2
    assert rig.runtime.ledger.total() == 0
    wait_until(lambda: managers_alive() == 0, what="every manager stopped")
    shutdown = {"reason": "shutdown", "result": "ok"}
    assert metrics.value("ws_supervisor_cleanups_total", shutdown) == 2
