"""The connection handle: frames to the manager, the close and losses to the supervisor."""

from __future__ import annotations

import threading

import pytest

from actors._runtime.dispatch import Dispatcher
from actors.clock import ManualClock
from actors.context import UserExecutionContext
from actors.handle import ConnectionHandle
from actors.messages import ConnectionClosed, Inbound, PeerGone, ReapConnection
from actors.ports import ManagerStats
from actors.tree import SupervisionTree
from supervisor.admin.backend import TreeAdminBackend
from supervisor.admin.fanout import FanoutObserver
from supervisor.admin.metrics import MetricsObserver
from supervisor.admin.readiness import Readiness
from tests.actors.probes import Inbox, asleep, ended
from tests.helpers import connect, handle_of, make_config, wait_until

pytestmark = pytest.mark.timeout(20)


class Wiring:
    """A handle between two recorders: its supervisor and its manager."""

    def __init__(
        self,
        dispatcher: Dispatcher,
        clock: ManualClock,
        *,
        inline: bool = False,
        supervisor_turn: int = 0,
    ) -> None:
        self.supervisor, self.manager = Inbox(dispatcher), Inbox(dispatcher)
        self.context = UserExecutionContext.from_websocket_request("alice")
        self.stats = ManagerStats(connected_at=0.0, last_activity=clock.monotonic())
        self.handle = ConnectionHandle(
            self.context,
            self.supervisor.ref,
            self.manager.ref,
            self.stats,
            clock,
            inline=inline,
            supervisor_turn=supervisor_turn,
        )

    @property
    def ws(self) -> str:
        return self.context.websocket_id


@pytest.fixture
def wiring(managers: Dispatcher, clock: ManualClock) -> Wiring:
    return Wiring(managers, clock)


def test_a_delivered_frame_reaches_the_manager_as_an_inbound_of_its_connection(
    wiring: Wiring,
) -> None:
    wiring.handle.deliver("hello")
    assert wiring.manager.next(Inbound) == Inbound(wiring.ws, "hello")
    assert wiring.handle.websocket_id == wiring.ws


def test_a_close_is_reported_once_with_the_time_it_was_seen_and_its_code(
    wiring: Wiring, clock: ManualClock
) -> None:
    clock.advance(3.0)
    wiring.handle.closed(1000)
    wiring.handle.closed(1006)
    assert wiring.supervisor.settle() == [ConnectionClosed(wiring.ws, clock.monotonic(), 1000)]
    assert not wiring.handle.is_open


def test_deliver_after_closed_does_nothing_so_a_late_frame_reaches_no_manager(
    wiring: Wiring,
) -> None:
    assert wiring.handle.is_open
    wiring.handle.closed()
    wiring.handle.deliver("late")
    assert wiring.manager.settle() == []
    assert wiring.supervisor.settle() == [ConnectionClosed(wiring.ws, 1_000.0, None)]


def test_a_gone_peer_and_a_timeout_are_reported_and_leave_the_handle_open(
    wiring: Wiring, clock: ManualClock
) -> None:
    clock.advance(1.5)
    wiring.handle.peer_gone()
    wiring.handle.timed_out()
    assert wiring.supervisor.settle() == [
        PeerGone(wiring.ws, clock.monotonic()),
        ReapConnection(wiring.ws, "timeout"),
    ]
    assert wiring.handle.is_open


def test_nothing_is_reported_after_the_close(wiring: Wiring) -> None:
    wiring.handle.closed()
    wiring.supervisor.next(ConnectionClosed)
    wiring.handle.peer_gone()
    wiring.handle.timed_out()
    wiring.handle.closed()
    assert wiring.supervisor.settle() == []


def test_a_heartbeat_records_the_clocks_time_as_the_last_sign_of_life(
    wiring: Wiring, clock: ManualClock
) -> None:
    assert wiring.stats.last_seen is None
    clock.advance(7.0)
    wiring.handle.heartbeat()
    assert wiring.stats.last_seen == clock.monotonic()


def test_a_frame_for_a_dead_manager_goes_to_the_supervisor_for_the_restart(
    wiring: Wiring,
) -> None:
    wiring.manager.ref.stop()
    ended(wiring.manager.ref)
    wiring.handle.deliver("in between")
    assert wiring.supervisor.settle() == [Inbound(wiring.ws, "in between")]


def test_a_rebound_handle_delivers_to_the_new_manager(wiring: Wiring, managers: Dispatcher) -> None:
    restarted = Inbox(managers)
    wiring.handle.rebind(restarted.ref)
    wiring.handle.deliver("after the restart")
    assert restarted.settle() == [Inbound(wiring.ws, "after the restart")]
    assert wiring.manager.settle() == []


def test_a_closed_handle_stays_closed_when_rebound(wiring: Wiring, managers: Dispatcher) -> None:
    restarted = Inbox(managers)
    wiring.handle.closed()
    wiring.handle.rebind(restarted.ref)
    wiring.handle.deliver("late")
    assert not wiring.handle.is_open
    assert restarted.settle() == []


@pytest.mark.parametrize("inline", [True, False])
def test_an_inline_handle_runs_a_frame_for_an_idle_manager_on_the_delivering_thread(
    managers: Dispatcher, clock: ManualClock, inline: bool
) -> None:
    wiring = Wiring(managers, clock, inline=inline)
    asleep(wiring.manager.ref)
    wiring.handle.deliver("where")
    message, thread = wiring.manager.next_with_thread()
    assert message == Inbound(wiring.ws, "where")
    assert (thread == threading.current_thread().name) is inline


@pytest.mark.parametrize("turn", [1, 0])
def test_a_supervisor_turn_lets_an_idle_supervisor_take_the_close_on_the_calling_thread(
    managers: Dispatcher, clock: ManualClock, turn: int
) -> None:
    wiring = Wiring(managers, clock, supervisor_turn=turn)
    asleep(wiring.supervisor.ref)
    wiring.handle.closed(1000)
    message, thread = wiring.supervisor.next_with_thread()
    assert isinstance(message, ConnectionClosed)
    assert (thread == threading.current_thread().name) is (turn > 0)


# --- fault injection: an end reported under another context (the seed's bug) ------------------


def test_a_misreporting_handle_carries_frames_as_its_own_and_its_end_under_the_foreign_ids(
    managers: Dispatcher, clock: ManualClock
) -> None:
    wiring = Wiring(managers, clock)
    foreign = UserExecutionContext.from_websocket_request("alice")
    handle = wiring.handle.misreporting(foreign)
    assert (handle.context, handle.websocket_id) == (wiring.context, wiring.context.websocket_id)
    handle.deliver("hello")
    assert wiring.manager.next(Inbound) == Inbound(wiring.context.websocket_id, "hello")
    handle.timed_out()
    assert wiring.supervisor.next(ReapConnection).websocket_id == wiring.context.websocket_id
    handle.peer_gone()
    assert wiring.supervisor.next(PeerGone).websocket_id == foreign.websocket_id
    handle.closed(1000)
    closed = wiring.supervisor.next(ConnectionClosed)
    assert (closed.websocket_id, closed.code) == (foreign.websocket_id, 1000)
    assert not handle.is_open and wiring.handle.is_open


def test_a_closed_handle_cannot_misreport(wiring: Wiring) -> None:
    wiring.handle.closed()
    with pytest.raises(ValueError, match="no end left to report"):
        wiring.handle.misreporting(wiring.context)


def test_a_close_under_a_foreign_key_is_a_mismatch_the_counter_and_readiness_see(
    metrics: MetricsObserver, clock: ManualClock
) -> None:
    readiness = Readiness(clock)
    with SupervisionTree(
        make_config(), clock=clock, observer=FanoutObserver(metrics, readiness), tick=False
    ) as tree:
        admission, _, ctx = connect(tree, "alice")
        admitted = handle_of(admission)
        assert isinstance(admitted, ConnectionHandle)
        assert metrics.value("ws_supervisor_thread_id_mismatches_total") == 0
        foreign = UserExecutionContext.from_websocket_request("alice")  # as the seed rebuilt it
        admitted.misreporting(foreign).closed(1000)
        wait_until(lambda: metrics.value("ws_supervisor_thread_id_mismatches_total") == 1)
        backend = TreeAdminBackend(tree, metrics, readiness)
        assert backend.readiness() == (False, ["thread_id mismatch seen (1)"])  # /readyz: 503
        assert [trigger.id for trigger in backend.triggers()] == ["thread_id_mismatch"]
        assert tree.ledger.holders("alice") == {ctx.isolation_key: ctx.websocket_id}  # the leak
        admitted.closed(1000)  # the connection's own close still frees it
        wait_until(lambda: tree.ledger.usage("alice") == 0)
        assert metrics.value("ws_supervisor_thread_id_mismatches_total") == 1
