"""The manager actor: serves one connection at a time, and reports its crash and its end."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pykka
import pytest

from actors._runtime.dispatch import Dispatcher
from actors.clock import ManualClock
from actors.context import UserExecutionContext
from actors.manager import ManagerActor
from actors.messages import (
    Attach,
    ChildFailed,
    ChildStopped,
    Crash,
    Detach,
    Inbound,
    ManagerIdle,
    Outbound,
)
from actors.policies.pool import PoolPolicy
from actors.ports import Handler, ManagerStats, QueuePort, inbound_cost
from actors.tree import echo_handler
from tests.actors.probes import Inbox, ended

pytestmark = pytest.mark.timeout(20)


class Connection:
    """What a supervisor attaches: a context, a port and fresh counters."""

    def __init__(self, clock: ManualClock, handler: Handler = echo_handler) -> None:
        self.context = UserExecutionContext.from_websocket_request("alice")
        self.port = QueuePort()
        self.stats = ManagerStats(connected_at=0.0, last_activity=clock.monotonic())
        self.handler = handler

    @property
    def ws(self) -> str:
        return self.context.websocket_id

    def attach(self) -> Attach:
        return Attach(self.context, self.port, self.stats, self.handler)


def start_manager(
    supervisor: Inbox, clock: ManualClock, dispatcher: Dispatcher, pool: PoolPolicy | None = None
) -> pykka.ActorRef[Any]:
    ref: pykka.ActorRef[Any] = ManagerActor.start(supervisor.ref, clock, dispatcher, pool)
    return ref


def test_an_attached_manager_answers_through_the_port_and_counts_both_ways(
    managers: Dispatcher, clock: ManualClock
) -> None:
    supervisor = Inbox(managers)
    manager = start_manager(supervisor, clock, managers)
    conn = Connection(clock)
    manager.tell(conn.attach())
    clock.advance(5.0)
    manager.tell(Inbound(conn.ws, "hello"))
    assert conn.port.frames.get(timeout=2) == "hello"
    manager.ask(object(), timeout=2)  # its turn is over
    assert (conn.stats.messages_in, conn.stats.messages_out) == (1, 1)
    assert conn.stats.last_activity == clock.monotonic()


def test_a_frame_is_counted_out_before_the_port_has_it(
    managers: Dispatcher, clock: ManualClock
) -> None:
    conn = Connection(clock)
    seen: list[int] = []

    class CountingPort(QueuePort):  # what the loop may read as soon as a frame is written
        def send_text(self, text: str) -> None:
            seen.append(conn.stats.messages_out)
            super().send_text(text)

    conn.port = CountingPort()
    manager = start_manager(Inbox(managers), clock, managers)
    manager.tell(conn.attach())
    manager.tell(Outbound(conn.ws, "pushed"))
    manager.tell(Inbound(conn.ws, "echoed"))
    assert [conn.port.frames.get(timeout=2) for _ in range(2)] == ["pushed", "echoed"]
    assert seen == [1, 2]


def test_a_frame_is_a_sign_of_life_once_keepalive_is_reported(
    managers: Dispatcher, clock: ManualClock
) -> None:
    manager = start_manager(Inbox(managers), clock, managers)
    conn = Connection(clock)
    manager.tell(conn.attach())
    manager.tell(Inbound(conn.ws, "before any pong"))
    manager.ask(object(), timeout=2)
    assert conn.stats.last_seen is None  # the keepalive rule does not apply yet
    conn.stats.last_seen = clock.monotonic()
    clock.advance(4.0)
    manager.tell(Inbound(conn.ws, "after a pong"))
    manager.ask(object(), timeout=2)
    assert conn.stats.last_seen == clock.monotonic()


def test_a_push_is_sent_only_to_the_connection_it_names(
    managers: Dispatcher, clock: ManualClock
) -> None:
    manager = start_manager(Inbox(managers), clock, managers)
    conn = Connection(clock)
    manager.tell(conn.attach())
    manager.tell(Outbound("ws_someone_else", "not for you"))
    manager.tell(Inbound("ws_someone_else", "nor this"))
    manager.tell(Outbound(conn.ws, "for you"))
    assert conn.port.frames.get(timeout=2) == "for you"
    manager.ask(object(), timeout=2)
    assert conn.port.frames.empty()
    assert (conn.stats.messages_in, conn.stats.messages_out) == (0, 1)


def test_a_reused_manager_keeps_nothing_of_its_previous_connection(
    managers: Dispatcher, clock: ManualClock
) -> None:
    supervisor = Inbox(managers)
    manager = start_manager(supervisor, clock, managers)
    first, second = Connection(clock), Connection(clock)
    manager.tell(first.attach())
    manager.tell(Inbound(first.ws, "first"))
    manager.tell(Detach())
    assert supervisor.take(ManagerIdle) == ManagerIdle(manager.actor_urn, reusable=True)
    manager.tell(second.attach())
    manager.tell(Inbound(first.ws, "a late frame of the first"))
    manager.tell(Outbound(first.ws, "a late push to the first"))
    manager.tell(Inbound(second.ws, "second"))
    assert second.port.frames.get(timeout=2) == "second"
    manager.ask(object(), timeout=2)
    assert first.port.frames.get_nowait() == "first" and first.port.frames.empty()
    assert second.port.frames.empty()
    assert (first.stats.messages_in, first.stats.messages_out) == (1, 1)
    assert (second.stats.messages_in, second.stats.messages_out) == (1, 1)


def test_reset_for_new_connection_takes_on_the_new_connection_and_drops_the_old_ones_frames(
    managers: Dispatcher, clock: ManualClock
) -> None:
    manager = start_manager(Inbox(managers), clock, managers)
    first, second = Connection(clock), Connection(clock)
    manager.tell(first.attach())
    manager.ask(object(), timeout=2)
    proxy = manager.proxy()
    proxy.reset_for_new_connection(second.context, second.port, second.stats).get(timeout=2)
    assert proxy.context.get(timeout=2) is second.context
    assert proxy.state.get(timeout=2) == "connected"
    assert proxy.served.get(timeout=2) == 2
    manager.tell(Outbound(first.ws, "for the first"))
    manager.tell(Outbound(second.ws, "for the second"))
    assert second.port.frames.get(timeout=2) == "for the second"
    manager.ask(object(), timeout=2)
    assert first.port.frames.empty() and second.port.frames.empty()
    assert (second.stats.messages_out, first.stats.messages_out) == (1, 0)


def test_is_reusable_answers_false_while_a_connection_is_attached(
    managers: Dispatcher, clock: ManualClock
) -> None:
    manager = start_manager(Inbox(managers), clock, managers)
    conn = Connection(clock)
    manager.tell(conn.attach())
    assert manager.proxy().is_reusable().get(timeout=2) is False


def test_is_reusable_answers_true_for_a_new_manager_and_after_a_clean_detach(
    managers: Dispatcher, clock: ManualClock
) -> None:
    supervisor = Inbox(managers)
    manager = start_manager(supervisor, clock, managers)
    assert manager.proxy().is_reusable().get(timeout=2) is True
    manager.tell(Connection(clock).attach())
    manager.tell(Detach())
    assert supervisor.take(ManagerIdle) == ManagerIdle(manager.actor_urn, reusable=True)
    assert manager.proxy().is_reusable().get(timeout=2) is True


def test_a_manager_whose_connection_ended_in_a_crash_says_it_is_not_reusable(
    managers: Dispatcher, clock: ManualClock
) -> None:
    supervisor = Inbox(managers)
    manager = start_manager(supervisor, clock, managers)
    conn = Connection(clock)
    conn.stats.restarts = 1  # it is the replacement of a manager that crashed on this connection
    manager.tell(conn.attach())
    manager.tell(Detach())
    assert supervisor.take(ManagerIdle) == ManagerIdle(manager.actor_urn, reusable=False)
    manager.tell(Connection(clock).attach())  # a clean connection after it: reusable again
    manager.tell(Detach())
    assert supervisor.take(ManagerIdle) == ManagerIdle(manager.actor_urn, reusable=True)


def test_a_manager_that_has_served_its_configured_number_of_connections_is_not_reusable(
    managers: Dispatcher, clock: ManualClock
) -> None:
    supervisor = Inbox(managers)
    pool = PoolPolicy(size=4, idle_seconds=30.0, max_uses=2)
    manager = start_manager(supervisor, clock, managers, pool)
    answers = []
    for _ in range(2):
        manager.tell(Connection(clock).attach())
        manager.tell(Detach())
        answers.append(supervisor.take(ManagerIdle).reusable)
    assert answers == [True, False]


def test_a_crash_while_serving_reports_the_frames_still_waiting_for_its_connection(
    managers: Dispatcher, clock: ManualClock
) -> None:
    entered, release = threading.Event(), threading.Event()

    def crash_on_boom(
        context: UserExecutionContext, text: str, send: Callable[[str], None]
    ) -> None:
        if text == "boom":
            entered.set()
            release.wait(10)
            raise RuntimeError("handler crashed")
        send(text)

    supervisor = Inbox(managers)
    manager = start_manager(supervisor, clock, managers)
    conn = Connection(clock, crash_on_boom)
    manager.tell(conn.attach())
    manager.tell(Inbound(conn.ws, "boom"))
    assert entered.wait(5)
    waiting = [Inbound(conn.ws, "one"), Outbound(conn.ws, "two"), Inbound(conn.ws, "three")]
    for message in (waiting[0], Inbound("ws_another", "not its"), *waiting[1:]):
        manager.tell(message)
    release.set()
    failed = supervisor.take(ChildFailed)
    assert (failed.websocket_id, failed.actor_urn) == (conn.ws, manager.actor_urn)
    assert "handler crashed" in failed.error
    assert failed.pending == tuple(waiting)
    ended(manager)


def test_a_frame_counts_as_done_once_handled_and_the_one_a_crash_ends_does_too(
    managers: Dispatcher, clock: ManualClock
) -> None:
    entered, release = threading.Event(), threading.Event()

    def slow(context: UserExecutionContext, text: str, send: Callable[[str], None]) -> None:
        entered.set()
        release.wait(10)
        if text == "boom":
            raise RuntimeError("handler crashed")

    supervisor = Inbox(managers)
    manager = start_manager(supervisor, clock, managers)
    conn = Connection(clock, slow)
    manager.tell(conn.attach())
    for text in ("first", "boom"):  # the shell counts what it delivers; here, by hand
        conn.stats.inbound_bytes += inbound_cost(text)
        manager.tell(Inbound(conn.ws, text))
    assert entered.wait(5)
    assert conn.stats.inbound_waiting == inbound_cost("first") + inbound_cost("boom")
    release.set()
    supervisor.take(ChildFailed)
    assert conn.stats.inbound_waiting == 0  # "first" handled, "boom" ended by the crash
    assert conn.stats.inbound_done == inbound_cost("first") + inbound_cost("boom")
    ended(manager)


def test_a_crash_of_a_manager_serving_nobody_is_reported_to_nobody(
    managers: Dispatcher, clock: ManualClock
) -> None:
    supervisor = Inbox(managers)
    manager = start_manager(supervisor, clock, managers)
    manager.tell(Crash("idle"))
    ended(manager)
    assert not any(isinstance(m, ChildFailed) for m in supervisor.settle())


def test_a_stopping_manager_tells_its_supervisor_that_it_has_stopped(
    managers: Dispatcher, clock: ManualClock
) -> None:
    supervisor = Inbox(managers)
    manager = start_manager(supervisor, clock, managers)
    manager.stop(timeout=5)
    assert supervisor.take(ChildStopped) == ChildStopped(manager.actor_urn)
