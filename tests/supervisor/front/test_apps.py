"""Apps: which promise to run inline, and what the tree makes of the promise."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from actors._runtime.dispatch import Dispatcher
from actors.clock import ManualClock
from actors.observer import NullObserver
from actors.policies.ledger import InMemoryLedger
from actors.runtime import Runtime
from actors.tree import echo_handler
from supervisor.front.apps import EchoApp, WorkerEchoApp, load_app
from supervisor.front.protocol import JsonProtocol
from tests.helpers import make_config

pytestmark = pytest.mark.timeout(10)


class SaysYes(EchoApp):
    """An echo whose promise is not the value True: it does not count."""

    runs_inline = "yes"  # type: ignore[assignment]


def runtime_for(factory: Callable[[], Any]) -> Runtime:
    config = make_config()
    return Runtime(
        config,
        ManualClock(),
        InMemoryLedger(config.quota.node_max_managers),
        NullObserver(),
        factory,
        dispatcher=Dispatcher(),
        system_dispatcher=Dispatcher(),
    )


def test_the_echo_app_runs_inline_and_the_worker_echo_app_does_not() -> None:
    assert JsonProtocol(EchoApp()).runs_inline is True
    assert JsonProtocol(WorkerEchoApp()).runs_inline is False


def test_only_the_value_true_is_a_promise_to_run_inline() -> None:
    assert JsonProtocol(SaysYes()).runs_inline is False


@pytest.mark.parametrize(
    ("path", "inline"),
    [("supervisor.front.apps:EchoApp", True), ("supervisor.front.apps:WorkerEchoApp", False)],
)
def test_the_runtime_handles_frames_inline_only_for_an_app_that_promises_it(
    path: str, inline: bool
) -> None:
    assert runtime_for(load_app(path)).inline_frames is inline


def test_a_plain_handler_function_is_not_run_inline() -> None:
    assert runtime_for(lambda: echo_handler).inline_frames is False
