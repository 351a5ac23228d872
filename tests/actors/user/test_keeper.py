"""Letting go of a connection: the close code of each reason, the slot, the manager, the wake."""

from __future__ import annotations

from typing import get_args

import pykka
import pytest

from actors._runtime.dispatch import Dispatcher
from actors.clock import ManualClock
from actors.codes import ServerCloseCode
from actors.manager import ManagerActor
from actors.messages import ReapConnection, Tick
from actors.observer import CleanupReason
from actors.settings import PoolConfig, Settings
from supervisor.admin.metrics import MetricsObserver
from tests.actors.probes import SupervisorRig, make_runtime
from tests.helpers import wait_until

pytestmark = pytest.mark.timeout(30)

CODE_OF: dict[CleanupReason, ServerCloseCode] = {
    "close": ServerCloseCode.NORMAL,
    "timeout": ServerCloseCode.IDLE_TIMEOUT,
    "proactive": ServerCloseCode.IDLE_TIMEOUT,
    "emergency": ServerCloseCode.IDLE_TIMEOUT,
    "evict": ServerCloseCode.EVICTED,
    "supersede": ServerCloseCode.SUPERSEDED,
    "crash": ServerCloseCode.INTERNAL_ERROR,
    "shutdown": ServerCloseCode.GOING_AWAY,
}


@pytest.fixture
def rig(
    managers: Dispatcher, system: Dispatcher, clock: ManualClock, metrics: MetricsObserver
) -> SupervisorRig:
    return SupervisorRig(make_runtime(clock, metrics, managers, system))


def test_every_cleanup_reason_has_a_close_code() -> None:
    assert set(CODE_OF) == set(get_args(CleanupReason))


@pytest.mark.parametrize("reason", list(CODE_OF))
def test_a_connection_reaped_for_a_reason_is_closed_with_that_reasons_code(
    rig: SupervisorRig, reason: CleanupReason
) -> None:
    context, port, _ = rig.connect()
    rig.ref.tell(ReapConnection(context.websocket_id, reason))
    assert port.wait_closed(2) == CODE_OF[reason]
    assert port.close_reason == reason


def test_a_reap_with_a_why_says_it_in_the_close_frame(rig: SupervisorRig) -> None:
    context, port, _ = rig.connect()
    rig.ref.tell(ReapConnection(context.websocket_id, "evict", "moved to node b"))
    assert port.wait_closed(2) == ServerCloseCode.EVICTED
    assert port.close_reason == "moved to node b"


def test_a_reaped_connection_frees_its_slot_at_once_and_stays_closing_until_confirmed(
    rig: SupervisorRig, metrics: MetricsObserver
) -> None:
    context, port, handle = rig.connect(confirm_close=False)
    rig.ref.tell(ReapConnection(context.websocket_id, "timeout"))
    (child,) = rig.snapshot()["managers"]
    assert (child["state"], child["holds_slot"]) == ("closing", False)
    assert rig.runtime.ledger.usage("alice") == 0
    timeout = {"reason": "timeout", "result": "ok"}
    assert metrics.value("ws_supervisor_cleanups_total", timeout) == 0
    handle.closed(port.close_code)
    wait_until(lambda: rig.snapshot()["managers"] == [], what="the close confirmed")
    assert metrics.value("ws_supervisor_cleanups_total", timeout) == 1


def test_a_connection_already_closing_is_not_reaped_again(
    rig: SupervisorRig, metrics: MetricsObserver
) -> None:
    context, port, handle = rig.connect(confirm_close=False)
    rig.ref.tell(ReapConnection(context.websocket_id, "timeout"))
    rig.ref.tell(ReapConnection(context.websocket_id, "evict"))
    rig.snapshot()
    handle.closed(port.close_code)
    wait_until(lambda: rig.snapshot()["managers"] == [], what="the close confirmed")
    counted = {
        reason: metrics.value("ws_supervisor_cleanups_total", {"reason": reason, "result": "ok"})
        for reason in ("timeout", "evict")
    }
    assert counted == {"timeout": 1, "evict": 0}
    assert metrics.value("ws_supervisor_release_latency_seconds_count") == 1


def test_freeing_a_slot_the_ledger_no_longer_gives_this_connection_is_a_mismatch(
    rig: SupervisorRig, metrics: MetricsObserver
) -> None:
    context, _, handle = rig.connect()
    assert rig.runtime.ledger.release("alice", context.isolation_key, context.websocket_id)
    handle.closed()
    wait_until(lambda: rig.snapshot()["managers"] == [], what="the close handled")
    assert metrics.value("ws_supervisor_thread_id_mismatches_total") == 1


def test_a_retired_manager_joins_the_pool_only_while_it_has_room(
    managers: Dispatcher, system: Dispatcher, clock: ManualClock, metrics: MetricsObserver
) -> None:
    settings = Settings(pool=PoolConfig(size=1))
    rig = SupervisorRig(make_runtime(clock, metrics, managers, system, settings=settings))
    handles = [rig.connect()[2] for _ in range(2)]
    for handle in handles:
        handle.closed()
    wait_until(
        lambda: sum(r.is_alive() for r in pykka.ActorRegistry.get_by_class(ManagerActor)) == 1,
        what="the manager the pool has no room for stopped",
    )
    assert rig.snapshot()["pool_idle"] == 1


def test_the_wake_time_is_the_earliest_of_the_next_sweep_a_close_and_a_pool_expiry(
    rig: SupervisorRig, clock: ManualClock
) -> None:
    settings = rig.runtime.settings
    keepalive = settings.timeouts.ping_interval + settings.timeouts.ping_timeout
    sweep_due = min(settings.timeouts.idle_timeout, keepalive)  # 40 s by default
    close_due = settings.cleanup.emergency_cleanup_timeout  # 15 s
    pool_due = settings.pool.idle_seconds  # 30 s
    assert close_due < pool_due < sweep_due
    now = clock.monotonic()
    context, port, handle = rig.connect(confirm_close=False)
    assert rig.report_where(lambda r: r.used == 1).wake_at == float("-inf")  # never swept
    rig.ref.tell(Tick(now))
    swept = rig.report_where(lambda r: r.wake_at > now).wake_at
    assert swept == pytest.approx(now + sweep_due, abs=1e-5) and swept < now + sweep_due
    rig.ref.tell(ReapConnection(context.websocket_id, "timeout"))
    assert rig.report_where(lambda r: r.used == 0).wake_at == now + close_due
    handle.closed(port.close_code)
    assert rig.report_where(lambda r: r.pool_idle == 1).wake_at == now + pool_due
