"""The tree's one timer: it ticks when something is due, and otherwise stays asleep."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from typing import Any

import pykka
import pytest

from actors.clock import SystemClock
from actors.codes import ServerCloseCode
from actors.messages import Tick
from actors.ticker import QUIET_TICK, Alarm, Ticker
from actors.tree import SupervisionTree
from tests.helpers import connect, make_config, wait_until


class TickRecorder(pykka.ThreadingActor):
    def __init__(self) -> None:
        super().__init__()
        self.ticks: list[float] = []

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, Tick):
            self.ticks.append(message.now)
        return len(self.ticks)


@pytest.fixture
def recorder() -> Iterator[pykka.ActorRef[Any]]:
    ref = TickRecorder.start()
    yield ref
    ref.stop()


def ticks_seen(recorder: pykka.ActorRef[Any]) -> int:
    seen: int = recorder.ask(object(), block=True, timeout=2)
    return seen


@pytest.fixture
def idle_ticker(recorder: pykka.ActorRef[Any]) -> Iterator[Ticker]:
    """A ticker every 10 ms whose alarm is an hour away."""
    alarm = Alarm()
    alarm.set(SystemClock().monotonic() + 3600)
    ticker = Ticker(recorder, SystemClock(), 0.01, alarm).start()
    yield ticker
    ticker.stop()


def test_a_ticker_with_nothing_due_stays_asleep_until_a_request_brings_the_alarm_forward(
    recorder: pykka.ActorRef[Any], idle_ticker: Ticker
) -> None:
    time.sleep(0.4)  # 40 intervals, less than QUIET_TICK
    assert ticks_seen(recorder) == 0
    idle_ticker.alarm.request(SystemClock().monotonic())
    wait_until(lambda: ticks_seen(recorder) == 1, timeout=1.0, what="the tick asked for")


def test_a_ticker_always_due_ticks_no_faster_than_its_interval(
    recorder: pykka.ActorRef[Any],
) -> None:
    ticker = Ticker(recorder, SystemClock(), 0.05, Alarm()).start()  # due at once, for good
    try:
        time.sleep(0.5)
    finally:
        ticker.stop()
    ticks = recorder.proxy().ticks.get(timeout=2)
    assert 3 <= len(ticks) <= 11
    assert all(b - a >= 0.05 for a, b in itertools.pairwise(ticks))


def test_a_ticker_with_nothing_due_still_ticks_once_per_quiet_period(
    recorder: pykka.ActorRef[Any], idle_ticker: Ticker
) -> None:
    wait_until(lambda: ticks_seen(recorder) >= 1, timeout=QUIET_TICK + 1.0, what="a tick")


def test_an_idle_tree_is_ticked_only_when_a_timeout_is_due_and_still_reaps_it_on_time() -> None:
    config = make_config(
        {
            "timeouts": {"tick_interval": 0.02, "idle_timeout": 0.5},
            "cleanup": {"background_interval": 60.0, "empty_supervisor_ttl": 60.0},
        }
    )
    with SupervisionTree(config) as tree:
        started = time.monotonic()
        _, port, _ = connect(tree, "alice")
        assert port.wait_closed(3.0) == ServerCloseCode.IDLE_TIMEOUT
        took = time.monotonic() - started
        assert 0.5 <= took < 1.5
        # every 0.02 s that would be 25 ticks or more; the sweep due at 0.5 s needs one or two
        assert tree.ticks <= 8, tree.ticks
