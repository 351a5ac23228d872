"""Admission: decide, take the slot, start or reuse a manager, answer the ticket once."""

from __future__ import annotations

import pykka
import pytest

from actors._runtime.dispatch import Dispatcher
from actors.clock import ManualClock
from actors.codes import ServerCloseCode
from actors.manager import ManagerActor
from actors.messages import Admit
from actors.observer import AdmissionResult
from actors.policies.ledger import AcquireResult, InMemoryLedger
from actors.settings import QuotaConfig, Settings
from supervisor.admin.metrics import MetricsObserver
from tests.actors.probes import (
    HeldLedger,
    SupervisorRig,
    admit_message,
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


@pytest.fixture
def held(
    managers: Dispatcher, system: Dispatcher, clock: ManualClock, metrics: MetricsObserver
) -> SupervisorRig:
    """A supervisor whose ledger is shared and answers only when the test says so."""
    return SupervisorRig(make_runtime(clock, metrics, managers, system, ledger=HeldLedger()))


def ledger_of(rig: SupervisorRig) -> HeldLedger:
    ledger = rig.runtime.ledger
    assert isinstance(ledger, HeldLedger)
    return ledger


def managers_alive() -> int:
    return sum(ref.is_alive() for ref in pykka.ActorRegistry.get_by_class(ManagerActor))


def test_a_ticket_withdrawn_before_the_answer_gets_none_and_leaves_no_slot(
    rig: SupervisorRig, metrics: MetricsObserver
) -> None:
    context, port, ticket = admit_message("alice")
    assert ticket.withdraw()  # the caller gave up before the supervisor got to it
    rig.ref.tell(Admit(context, port, ticket))
    report = rig.report_where(lambda r: r.admits_seen == 1)
    assert report.used == 0
    assert ticket.wait(0) is None
    assert rig.runtime.ledger.usage("alice") == 0
    assert rig.snapshot()["managers"] == []
    assert metrics.value("ws_supervisor_admissions_total", {"result": "admitted"}) == 0


def test_a_full_quota_refuses_a_new_thread_naming_the_quota_and_a_retry_time(
    managers: Dispatcher, system: Dispatcher, clock: ManualClock, metrics: MetricsObserver
) -> None:
    settings = Settings(quota=QuotaConfig(max_managers_per_user=1))
    rig = SupervisorRig(make_runtime(clock, metrics, managers, system, settings=settings))
    rig.connect()
    refused = ticket_answer(rig.admit()[2])
    assert (refused.result, refused.reason, refused.retry_after) == (
        "rejected_quota",
        "quota_full",
        1.0,
    )
    assert refused.handle is None
    assert metrics.value("ws_supervisor_admissions_total", {"result": "rejected_quota"}) == 1


def test_a_full_node_refuses_naming_the_node(
    managers: Dispatcher, system: Dispatcher, clock: ManualClock, metrics: MetricsObserver
) -> None:
    ledger = InMemoryLedger(node_limit=1)
    assert ledger.acquire("bob", "bob:t", "ws_bob", 5) is AcquireResult.ACQUIRED
    rig = SupervisorRig(make_runtime(clock, metrics, managers, system, ledger=ledger))
    refused = ticket_answer(rig.admit()[2])
    assert (refused.result, refused.reason) == ("rejected_node", "node_full")
    assert rig.snapshot()["managers"] == []


def test_a_resumed_thread_takes_over_its_slot_even_when_the_quota_is_full(
    managers: Dispatcher, system: Dispatcher, clock: ManualClock, metrics: MetricsObserver
) -> None:
    settings = Settings(quota=QuotaConfig(max_managers_per_user=1))
    rig = SupervisorRig(make_runtime(clock, metrics, managers, system, settings=settings))
    old_context, old_port, _ = rig.connect()
    context, _, ticket = rig.admit(old_context.thread_id)
    assert ticket_answer(ticket).result == "superseded"
    assert old_port.wait_closed(2) == ServerCloseCode.SUPERSEDED
    assert rig.runtime.ledger.holders("alice") == {context.isolation_key: context.websocket_id}


def test_at_the_proactive_threshold_an_admission_first_reaps_the_connections_no_longer_live(
    managers: Dispatcher, system: Dispatcher, clock: ManualClock, metrics: MetricsObserver
) -> None:
    settings = Settings(quota=QuotaConfig(max_managers_per_user=4, proactive_cleanup_ratio=0.5))
    rig = SupervisorRig(make_runtime(clock, metrics, managers, system, settings=settings))
    stale = [rig.connect()[1] for _ in range(2)]  # 2 of 4: the proactive threshold
    clock.advance(settings.timeouts.idle_timeout + 1.0)
    assert ticket_answer(rig.admit()[2]).admitted
    assert [p.wait_closed(2) for p in stale] == [ServerCloseCode.IDLE_TIMEOUT] * 2
    assert stale[0].close_reason == "not live: idle"
    proactive = {"reason": "proactive", "result": "ok"}
    wait_until(lambda: metrics.value("ws_supervisor_cleanups_total", proactive) == 2)
    assert rig.runtime.ledger.usage("alice") == 1


def test_a_pooled_manager_serves_the_next_connection_instead_of_a_new_one(
    rig: SupervisorRig, metrics: MetricsObserver
) -> None:
    _, _, handle = rig.connect()
    handle.closed()
    rig.report_where(lambda r: r.pool_idle == 1)
    _, port, again = rig.connect()
    again.deliver("hello")
    assert port.frames.get(timeout=2) == "hello"
    assert metrics.value("ws_supervisor_pool_reuses_total") == 1
    assert managers_alive() == 1


def test_with_a_shared_ledger_each_admission_waits_for_the_answer_to_the_one_before(
    held: SupervisorRig,
) -> None:
    ledger = ledger_of(held)
    first, second = held.admit()[2], held.admit()[2]
    held.snapshot()  # both admissions have reached the supervisor
    assert ledger.pending.qsize() == 1  # the second is not even asked for yet
    assert first.wait(0) is None and second.wait(0) is None
    ledger.answer()
    assert ticket_answer(first).admitted
    assert second.wait(0) is None
    ledger.answer()  # the second was asked for once the first was answered
    assert ticket_answer(second).admitted
    assert ledger.usage("alice") == 2


CASES: list[tuple[AcquireResult, AdmissionResult, str]] = [
    (AcquireResult.SUPERSEDED, "superseded", ""),
    (AcquireResult.EVICTED, "evicted", ""),
    (AcquireResult.HELD, "rejected_quota", "quota_full"),
    (AcquireResult.USER_FULL, "rejected_quota", "quota_full"),
    (AcquireResult.NODE_FULL, "rejected_node", "node_full"),
    (AcquireResult.UNAVAILABLE, "rejected_unavailable", "ledger_unavailable"),
]


@pytest.mark.parametrize("case", CASES, ids=lambda case: case[0].value)
def test_a_shared_ledgers_answer_becomes_the_result_of_the_admission(
    held: SupervisorRig, case: tuple[AcquireResult, AdmissionResult, str]
) -> None:
    answer, result, reason = case
    ticket = held.admit()[2]
    ledger_of(held).answer(answer)
    admission = ticket_answer(ticket)
    assert (admission.result, admission.reason) == (result, reason)
    assert admission.admitted is (not result.startswith("rejected"))


def test_a_supervisor_stopped_with_an_admission_pending_cancels_it(held: SupervisorRig) -> None:
    ledger = ledger_of(held)
    ticket = held.admit()[2]
    pending = ledger.pending.get(timeout=2)
    held.ref.stop(timeout=5)
    assert ledger.cancelled == [pending]
    assert ticket.wait(0) is None
