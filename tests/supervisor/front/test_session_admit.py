"""The loop's side of admission (``supervisor.front.session.admit``): timeouts and cancellations.

The supervisors' one worker is held by a real dispatched actor that blocks
until the test lets it go, so an admission can be made late on purpose.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from actors._runtime.dispatch import DispatchedActor, Dispatcher
from actors._runtime.mailbox import Mailbox
from actors.context import UserExecutionContext
from actors.tree import SupervisionTree
from supervisor.front.bridge import WebSocketPort
from supervisor.front.session import admit
from tests.helpers import make_config, wait_until

pytestmark = [pytest.mark.timeout(30), pytest.mark.asyncio]


class Blocker(DispatchedActor):
    """Holds its dispatcher's worker while ``gate`` is closed."""

    def __init__(self, dispatcher: Dispatcher, gate: threading.Event) -> None:
        super().__init__(dispatcher)
        self.gate = gate

    def on_receive(self, message: Any) -> None:
        self.gate.wait(10)


@pytest.fixture
def tree() -> Iterator[SupervisionTree]:
    tree = SupervisionTree(make_config()).start()
    yield tree
    tree.stop()


def hold_the_supervisors(tree: SupervisionTree) -> threading.Event:
    """Block the supervisors' worker; set the returned event to let it go."""
    assert tree.system_dispatcher.workers == 1
    gate = threading.Event()
    Blocker.start(tree.system_dispatcher, gate).tell("block")
    return gate


def port() -> WebSocketPort:
    return WebSocketPort(asyncio.get_running_loop(), None)  # type: ignore[arg-type]


async def test_an_answer_in_time_admits_and_holds_one_slot(tree: SupervisionTree) -> None:
    admission = await admit(tree, UserExecutionContext.from_websocket_request("ann"), port(), 5)
    assert admission.result == "admitted" and admission.handle is not None
    assert tree.ledger.usage("ann") == 1
    admission.handle.closed()
    await asyncio.to_thread(wait_until, lambda: tree.ledger.usage("ann") == 0)


async def test_an_answer_given_within_the_call_sets_no_timer_on_the_loop(
    tree: SupervisionTree, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = await admit(tree, UserExecutionContext.from_websocket_request("dee"), port(), 5)
    assert first.handle is not None  # dee's supervisor now runs; its first turn ends on a worker
    root, supervisor = tree._root_ref().actor_inbox, tree.supervisors()["dee"].actor_inbox
    assert isinstance(root, Mailbox) and isinstance(supervisor, Mailbox)
    await asyncio.to_thread(wait_until, lambda: root.asleep and supervisor.asleep)
    loop, timers = asyncio.get_running_loop(), []
    monkeypatch.setattr(loop, "call_later", lambda *args: timers.append(args))
    second = await admit(tree, UserExecutionContext.from_websocket_request("dee"), port(), 5)
    assert second.result == "admitted" and second.handle is not None
    assert timers == []  # the idle supervisor took its turn within the call, on the loop
    first.handle.closed()
    second.handle.closed()
    await asyncio.to_thread(wait_until, lambda: tree.ledger.usage("dee") == 0)


async def test_no_answer_in_time_is_a_503_and_the_late_admission_is_undone(
    tree: SupervisionTree,
) -> None:
    gate = hold_the_supervisors(tree)
    context = UserExecutionContext.from_websocket_request("bea")
    admission = await admit(tree, context, port(), 0.2)
    assert (admission.result, admission.reason) == ("rejected_unavailable", "no answer in time")
    gate.set()
    await asyncio.to_thread(wait_until, lambda: len(tree.snapshot()["users"]) == 1)
    assert tree.ledger.usage("bea") == 0


async def test_a_caller_cancelled_before_the_answer_leaves_no_slot(tree: SupervisionTree) -> None:
    gate = hold_the_supervisors(tree)
    context = UserExecutionContext.from_websocket_request("cid")
    task = asyncio.create_task(admit(tree, context, port(), 5))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    gate.set()
    await asyncio.to_thread(wait_until, lambda: len(tree.snapshot()["users"]) == 1)
    assert tree.ledger.usage("cid") == 0


async def test_a_caller_cancelled_with_the_answer_on_its_way_gives_the_slot_back(
    tree: SupervisionTree,
) -> None:
    context = UserExecutionContext.from_websocket_request("dan")
    task = asyncio.create_task(admit(tree, context, port(), 5))
    await asyncio.sleep(0)  # the admission is asked for
    deadline = time.monotonic() + 5
    while tree.ledger.usage("dan") == 0 and time.monotonic() < deadline:
        time.sleep(0.001)  # block the loop: the answer waits in its queue, not yet taken
    time.sleep(0.05)  # the offer follows the acquire in the same turn
    assert tree.ledger.usage("dan") == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.to_thread(wait_until, lambda: tree.ledger.usage("dan") == 0)
