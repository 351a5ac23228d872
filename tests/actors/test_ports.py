"""The edges: an admission ticket answered exactly once, and the queue port."""

from __future__ import annotations

import gc
import sys
import threading
import time
import tracemalloc
from collections.abc import Callable

import pytest

from actors.context import UserExecutionContext
from actors.ports import (
    INBOUND_OVERHEAD,
    Admission,
    AdmissionTicket,
    ManagerStats,
    QueuePort,
    inbound_cost,
)
from actors.tree import SupervisionTree
from tests.helpers import connect, handle_of, make_config


def admitted() -> Admission:
    return Admission("admitted", handle=ClosingHandle())


class ClosingHandle:
    """A handle that records the closes reported to it."""

    def __init__(self) -> None:
        self.context = UserExecutionContext.from_websocket_request("alice")
        self.stats = ManagerStats(connected_at=0.0, last_activity=0.0)
        self.closes: list[int | None] = []

    @property
    def websocket_id(self) -> str:
        return self.context.websocket_id

    @property
    def is_open(self) -> bool:
        return not self.closes

    def deliver(self, text: str) -> None:
        pass

    def heartbeat(self) -> None:
        pass

    def closed(self, code: int | None = None) -> None:
        self.closes.append(code)

    def peer_gone(self) -> None:
        pass

    def timed_out(self) -> None:
        pass


# AdmissionTicket


def test_the_first_offer_is_the_answer_and_a_second_offer_is_refused() -> None:
    answers: list[Admission] = []
    ticket = AdmissionTicket(answers.append)
    first, second = admitted(), Admission("rejected_quota", reason="quota_full")
    assert ticket.offer(first) is True
    assert ticket.offer(second) is False
    assert ticket.wait(0) is first
    assert answers == [first]


def test_an_offer_after_a_withdrawal_is_refused_so_the_supervisor_undoes_it() -> None:
    answers: list[Admission] = []
    ticket = AdmissionTicket(answers.append)
    assert ticket.withdraw() is True
    assert ticket.offer(admitted()) is False
    assert ticket.wait(0) is None
    assert answers == []


def test_a_withdrawal_after_an_offer_is_refused_and_the_answer_stands() -> None:
    ticket = AdmissionTicket()
    answer = admitted()
    assert ticket.offer(answer) is True
    assert ticket.withdraw() is False
    assert ticket.wait(0) is answer


def test_a_waiter_wakes_when_the_answer_is_offered_from_another_thread() -> None:
    ticket = AdmissionTicket()
    answer = admitted()
    offering = threading.Timer(0.05, ticket.offer, args=(answer,))
    started = time.monotonic()
    offering.start()
    try:
        assert ticket.wait(10) is answer
    finally:
        offering.join()
    assert time.monotonic() - started < 5


def test_a_wait_without_an_answer_gives_none_after_its_timeout() -> None:
    ticket = AdmissionTicket()
    started = time.monotonic()
    assert ticket.wait(0.05) is None
    assert time.monotonic() - started >= 0.05


def race_offer_and_withdrawal() -> tuple[AdmissionTicket, list[Admission], dict[str, bool]]:
    """An offer and a withdrawal released at once on two threads; what each returned."""
    answers: list[Admission] = []
    ticket, answer = AdmissionTicket(answers.append), admitted()
    results: dict[str, bool] = {}
    barrier = threading.Barrier(2)

    def offer() -> None:
        barrier.wait()
        results["offer"] = ticket.offer(answer)

    def withdraw() -> None:
        barrier.wait()
        results["withdraw"] = ticket.withdraw()

    threads = [threading.Thread(target=offer), threading.Thread(target=withdraw)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(5)
    return ticket, answers, results


def test_an_offer_racing_a_withdrawal_has_exactly_one_winner() -> None:
    for _ in range(200):
        ticket, answers, results = race_offer_and_withdrawal()
        assert results["offer"] != results["withdraw"]
        if results["offer"]:  # the answer was taken, and handed over once
            assert len(answers) == 1 and ticket.wait(0) is answers[0]
        else:  # withdrawn first: the answer is refused and nobody hears of it
            assert answers == [] and ticket.wait(0) is None


def test_an_admission_is_admitted_exactly_when_it_has_a_handle() -> None:
    assert admitted().admitted
    assert not Admission("rejected_node", reason="node_full", retry_after=5.0).admitted


# QueuePort


def test_a_queue_port_queues_frames_until_it_is_closed() -> None:
    port = QueuePort()
    port.send_text("one")
    port.send_text("two")
    port.close(4003, "idle")
    port.send_text("after the close")
    assert [port.frames.get_nowait() for _ in range(2)] == ["one", "two"]
    assert port.frames.empty()


def test_a_queue_port_keeps_the_first_close_only() -> None:
    port = QueuePort()
    assert not port.is_closed
    port.close(4001, "superseded")
    port.close(1001, "shutdown")
    assert port.is_closed
    assert (port.close_code, port.close_reason) == (4001, "superseded")
    assert port.wait_closed(0) == 4001


def test_a_queue_port_not_closed_in_time_answers_none() -> None:
    assert QueuePort().wait_closed(0.01) is None


def test_a_confirming_port_confirms_the_close_through_its_handle_once() -> None:
    port, handle = QueuePort(), ClosingHandle()
    port.bind(handle)
    port.close(4002, "evicted")
    port.close(4002, "evicted")
    assert handle.closes == [4002]


def test_a_port_closed_before_its_handle_is_bound_confirms_at_the_binding() -> None:
    port, handle = QueuePort(), ClosingHandle()
    port.close(4001, "superseded")
    assert handle.closes == []
    port.bind(handle)
    assert handle.closes == [4001]


@pytest.mark.parametrize("bind_first", [True, False])
def test_a_port_that_does_not_confirm_leaves_the_close_unconfirmed(bind_first: bool) -> None:
    port, handle = QueuePort(confirm_close=False), ClosingHandle()
    if bind_first:
        port.bind(handle)
    port.close(4003, "idle")
    port.bind(handle)
    assert handle.closes == []
    assert port.close_code == 4003


def test_a_connections_counters_start_at_zero_with_no_keepalive_seen() -> None:
    stats = ManagerStats(connected_at=1.0, last_activity=2.0)
    counters = (stats.messages_in, stats.messages_out, stats.outbound_queued, stats.restarts)
    assert counters == (0, 0, 0, 0)
    assert stats.last_seen is None


def test_an_inbound_frame_costs_its_str_and_the_message_around_it() -> None:
    ascii_text, wide_text = "a" * 1000, "\u0416" * 1000  # 1000 and 2000 bytes of characters
    assert inbound_cost(ascii_text) == sys.getsizeof(ascii_text) + INBOUND_OVERHEAD
    assert inbound_cost(wide_text) >= 2000 + INBOUND_OVERHEAD
    stats = ManagerStats(connected_at=1.0, last_activity=2.0)
    assert (stats.inbound_bytes, stats.inbound_done, stats.inbound_waiting) == (0, 0, 0)
    stats.inbound_bytes, stats.inbound_done = 900, 300
    assert stats.inbound_waiting == 600


def test_the_inbox_overhead_covers_what_a_waiting_message_really_holds() -> None:
    """Measured on a real inbox: a manager blocked in its handler, 2,000 frames behind it."""
    gate = threading.Event()

    def blocked(context: UserExecutionContext, text: str, send: Callable[[str], None]) -> None:
        gate.wait(10)

    with SupervisionTree(make_config(), handler_factory=lambda: blocked) as tree:
        admission, _, _ = connect(tree, "alice")
        handle = handle_of(admission)
        handle.deliver("first")  # the manager waits in it
        texts = [f"{n:06d}" for n in range(2000)]
        gc.collect()
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            for text in texts:
                handle.deliver(text)
            held = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
            gate.set()
        assert held <= 2000 * INBOUND_OVERHEAD, held / 2000
        handle.closed()
