"""The runtime: policies derived from the settings, and how far a turn may run inline."""

from __future__ import annotations

from collections.abc import Callable

import attrs
import pytest

from actors._runtime.dispatch import Dispatcher
from actors.clock import ManualClock
from actors.context import UserExecutionContext
from actors.observer import NullObserver
from actors.policies.ledger import InMemoryLedger, Ledger
from actors.policies.pool import PoolPolicy
from actors.policies.quota import QuotaPolicy
from actors.policies.reaping import ReapPolicy
from actors.policies.schedule import CleanupSchedule
from actors.policies.thresholds import Thresholds
from actors.ports import Handler
from actors.runtime import Runtime
from actors.settings import (
    CleanupConfig,
    PoolConfig,
    QuotaConfig,
    Settings,
    ThresholdsConfig,
    TimeoutsConfig,
)
from actors.tree import echo_handler
from tests.actors.probes import HeldLedger

UNUSUAL = Settings(
    quota=QuotaConfig(
        max_managers_per_user=7, proactive_cleanup_ratio=0.25, policy="evict_oldest_idle"
    ),
    thresholds=ThresholdsConfig(
        warning=0.3,
        critical=0.6,
        emergency=0.95,
        critical_action="none",
        emergency_action="shed_idle",
    ),
    cleanup=CleanupConfig(
        emergency_cleanup_timeout=3.0, background_interval=11.0, empty_supervisor_ttl=13.0
    ),
    pool=PoolConfig(size=2, idle_seconds=17.0, max_uses=23),
    timeouts=TimeoutsConfig(ping_interval=5.0, ping_timeout=2.0, idle_timeout=19.0),
)


def runtime(
    settings: Settings = UNUSUAL,
    *,
    ledger: Ledger | None = None,
    batch: int = 32,
    handler_factory: Callable[[], Handler] = lambda: echo_handler,
) -> Runtime:
    """A runtime on dispatchers that are never started (none is needed to build one)."""
    return Runtime(
        settings,
        ManualClock(),
        ledger or InMemoryLedger(100),
        NullObserver(),
        handler_factory,
        dispatcher=Dispatcher(workers=1, name="ws-supervisor-test-m"),
        system_dispatcher=Dispatcher(workers=1, batch=batch, name="ws-supervisor-test-s"),
    )


def test_the_quota_policy_comes_from_the_quota_settings() -> None:
    assert runtime().quota == QuotaPolicy(7, 0.25, "evict_oldest_idle")


def test_the_reap_policy_takes_the_keepalive_deadline_as_ping_interval_plus_timeout() -> None:
    assert runtime().reap == ReapPolicy(
        idle_timeout=19.0, keepalive_deadline=7.0, cleanup_timeout=3.0
    )


def test_the_pool_schedule_and_thresholds_come_from_their_settings() -> None:
    rt = runtime()
    assert rt.pool == PoolPolicy(size=2, idle_seconds=17.0, max_uses=23)
    assert rt.schedule == CleanupSchedule(background_interval=11.0, empty_supervisor_ttl=13.0)
    assert rt.thresholds == Thresholds(0.3, 0.6, 0.95, "none", "shed_idle")


def test_a_reload_builds_new_policies_from_the_new_settings_on_the_same_dispatchers() -> None:
    old = runtime(Settings())
    new = attrs.evolve(old, settings=UNUSUAL)
    assert new.quota.limit == 7 and old.quota.limit == Settings().quota.max_managers_per_user
    assert new.reap.idle_timeout == 19.0
    assert new.dispatcher is old.dispatcher
    assert new.system_dispatcher is old.system_dispatcher
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        old.settings = UNUSUAL  # type: ignore[misc]


@pytest.mark.parametrize(("batch", "root_turn"), [(32, 2), (2, 2), (1, 1)])
def test_with_a_memory_ledger_a_turn_runs_inline_for_the_system_batch_and_the_root_for_two(
    batch: int, root_turn: int
) -> None:
    rt = runtime(batch=batch)
    assert rt.system_turn == batch
    assert rt.root_turn == root_turn == min(2, rt.system_turn)


def test_with_a_shared_ledger_no_turn_of_the_root_or_a_supervisor_runs_inline() -> None:
    rt = runtime(ledger=HeldLedger())
    assert (rt.system_turn, rt.root_turn) == (0, 0)


class Inline:
    def __init__(self, runs_inline: object) -> None:
        self.runs_inline = runs_inline

    def __call__(
        self, context: UserExecutionContext, text: str, send: Callable[[str], None]
    ) -> None:
        send(text)


@pytest.mark.parametrize(
    ("factory", "inline"),
    [
        (lambda: Inline(True), True),
        (lambda: Inline("yes"), False),  # a promise is True itself, not truthy
        (lambda: Inline(False), False),
        (lambda: echo_handler, False),  # no promise at all
    ],
)
def test_frames_run_inline_only_when_the_handler_promises_never_to_block(
    factory: Callable[[], Handler], inline: bool
) -> None:
    assert runtime(handler_factory=factory).inline_frames is inline
