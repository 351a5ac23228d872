"""The pure policies: quota, ledger, thresholds, restart, reaping."""

from __future__ import annotations

from typing import Literal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from actors.clock import ManualClock
from actors.policies.ledger import AcquireResult, InMemoryLedger
from actors.policies.pool import PoolPolicy
from actors.policies.quota import QuotaPolicy, Verdict
from actors.policies.reaping import ChildView, ReapPolicy, ReapReason
from actors.policies.restart import RestartIntensity, should_restart
from actors.policies.schedule import CleanupSchedule
from actors.policies.thresholds import Action, Level, Thresholds
from supervisor.front.keepalive_grid import KeepaliveGrid

# QuotaPolicy


@pytest.mark.parametrize(
    ("limit", "ratio", "expected"),
    [(10, 0.5, 5), (5, 0.5, 3), (3, 0.5, 2), (1, 0.5, 1), (7, 0.3, 3), (10, 1.0, 10)],
)
def test_the_proactive_threshold_rounds_up(limit: int, ratio: float, expected: int) -> None:
    assert QuotaPolicy(limit, ratio).proactive_at == expected


def test_the_proactive_threshold_is_at_least_one_slot() -> None:
    assert QuotaPolicy(10, 0.0).proactive_at == 1
    assert QuotaPolicy(1, 0.01).proactive_at == 1


def test_a_sweep_is_due_at_and_above_the_proactive_threshold() -> None:
    policy = QuotaPolicy(10, 0.5)
    assert not policy.should_sweep(0)
    assert not policy.should_sweep(4)
    assert policy.should_sweep(5)
    assert policy.should_sweep(6)
    assert policy.should_sweep(10)


def test_a_held_key_is_superseded_even_when_the_quota_is_full() -> None:
    on_fulls: tuple[Literal["reject", "evict_oldest_idle"], ...] = ("reject", "evict_oldest_idle")
    for on_full in on_fulls:
        policy = QuotaPolicy(3, on_full=on_full)
        assert policy.decide(1, key_held=True) is Verdict.SUPERSEDE
        assert policy.decide(3, key_held=True) is Verdict.SUPERSEDE
        assert policy.decide(3, key_held=True, can_evict=False) is Verdict.SUPERSEDE


def test_a_new_key_under_the_limit_is_admitted() -> None:
    policy = QuotaPolicy(3)
    assert policy.decide(0, key_held=False) is Verdict.ADMIT
    assert policy.decide(2, key_held=False) is Verdict.ADMIT


def test_a_new_key_at_the_limit_is_rejected_when_on_full_is_reject() -> None:
    policy = QuotaPolicy(3, on_full="reject")
    assert policy.decide(3, key_held=False) is Verdict.REJECT
    assert policy.decide(3, key_held=False, can_evict=True) is Verdict.REJECT
    assert policy.decide(4, key_held=False) is Verdict.REJECT


def test_a_new_key_at_the_limit_evicts_the_oldest_idle_when_one_can_be_evicted() -> None:
    policy = QuotaPolicy(3, on_full="evict_oldest_idle")
    assert policy.decide(3, key_held=False, can_evict=True) is Verdict.EVICT
    assert policy.decide(2, key_held=False, can_evict=True) is Verdict.ADMIT


def test_a_new_key_at_the_limit_is_rejected_when_nothing_can_be_evicted() -> None:
    policy = QuotaPolicy(3, on_full="evict_oldest_idle")
    assert policy.decide(3, key_held=False, can_evict=False) is Verdict.REJECT


@pytest.mark.parametrize("limit", [0, -1])
def test_a_quota_below_one_slot_is_refused_at_construction(limit: int) -> None:
    with pytest.raises(ValueError, match="limit"):
        QuotaPolicy(limit)


# InMemoryLedger


def test_a_user_acquires_slots_up_to_the_limit_and_then_is_full() -> None:
    ledger = InMemoryLedger(node_limit=100)
    for index in range(3):
        assert ledger.acquire("u", f"u:t{index}", f"ws{index}", 3) is AcquireResult.ACQUIRED
    assert ledger.acquire("u", "u:t3", "ws3", 3) is AcquireResult.USER_FULL
    assert ledger.usage("u") == 3
    assert ledger.total() == 3
    assert "u:t3" not in ledger.holders("u")


def test_acquiring_a_held_key_answers_held_and_keeps_the_holder() -> None:
    ledger = InMemoryLedger(node_limit=100)
    assert ledger.acquire("u", "u:t", "ws1", 3) is AcquireResult.ACQUIRED
    assert ledger.acquire("u", "u:t", "ws2", 3) is AcquireResult.HELD
    assert ledger.holders("u") == {"u:t": "ws1"}
    assert ledger.usage("u") == 1


def test_a_held_key_answers_held_even_when_the_user_is_full() -> None:
    ledger = InMemoryLedger(node_limit=100)
    assert ledger.acquire("u", "u:t", "ws1", 1) is AcquireResult.ACQUIRED
    assert ledger.acquire("u", "u:t", "ws2", 1) is AcquireResult.HELD


def test_the_node_limit_applies_across_users() -> None:
    ledger = InMemoryLedger(node_limit=3)
    assert ledger.acquire("a", "a:1", "ws1", 5) is AcquireResult.ACQUIRED
    assert ledger.acquire("a", "a:2", "ws2", 5) is AcquireResult.ACQUIRED
    assert ledger.acquire("b", "b:1", "ws3", 5) is AcquireResult.ACQUIRED
    assert ledger.acquire("c", "c:1", "ws4", 5) is AcquireResult.NODE_FULL
    assert ledger.acquire("a", "a:3", "ws5", 5) is AcquireResult.NODE_FULL
    assert ledger.total() == 3
    assert ledger.usage("c") == 0


def test_a_user_full_answer_comes_before_node_full() -> None:
    ledger = InMemoryLedger(node_limit=1)
    assert ledger.acquire("a", "a:1", "ws1", 1) is AcquireResult.ACQUIRED
    assert ledger.acquire("a", "a:2", "ws2", 1) is AcquireResult.USER_FULL


def test_a_release_by_the_holder_frees_the_slot() -> None:
    ledger = InMemoryLedger(node_limit=10)
    ledger.acquire("u", "u:t", "ws1", 3)
    assert ledger.release("u", "u:t", "ws1") is True
    assert ledger.usage("u") == 0
    assert ledger.total() == 0
    assert ledger.holders("u") == {}
    assert ledger.acquire("u", "u:t", "ws2", 3) is AcquireResult.ACQUIRED


def test_a_release_by_another_holder_frees_nothing() -> None:
    ledger = InMemoryLedger(node_limit=10)
    ledger.acquire("u", "u:t", "ws1", 3)
    assert ledger.release("u", "u:t", "ws-other") is False
    assert ledger.holders("u") == {"u:t": "ws1"}
    assert ledger.usage("u") == 1
    assert ledger.total() == 1


def test_a_release_under_another_key_frees_nothing() -> None:
    """The seed's leak: a manager cleaned up under another id than the one it was made with."""
    ledger = InMemoryLedger(node_limit=10)
    ledger.acquire("u", "u:thread_a", "ws1", 3)
    assert ledger.release("u", "u:thread_b", "ws1") is False
    assert ledger.release("other", "u:thread_a", "ws1") is False
    assert ledger.holders("u") == {"u:thread_a": "ws1"}
    assert ledger.total() == 1


def test_a_second_release_of_the_same_slot_frees_nothing() -> None:
    ledger = InMemoryLedger(node_limit=10)
    ledger.acquire("u", "u:t", "ws1", 3)
    ledger.acquire("u", "u:t2", "ws2", 3)
    assert ledger.release("u", "u:t", "ws1") is True
    assert ledger.release("u", "u:t", "ws1") is False
    assert ledger.total() == 1


def test_a_transfer_hands_the_slot_to_the_new_holder() -> None:
    ledger = InMemoryLedger(node_limit=10)
    ledger.acquire("u", "u:t", "ws1", 3)
    assert ledger.transfer("u", "u:t", "ws1", "ws2") is True
    assert ledger.holders("u") == {"u:t": "ws2"}
    assert ledger.usage("u") == 1
    assert ledger.total() == 1
    assert ledger.release("u", "u:t", "ws1") is False
    assert ledger.release("u", "u:t", "ws2") is True


def test_a_transfer_from_a_non_holder_changes_nothing() -> None:
    ledger = InMemoryLedger(node_limit=10)
    ledger.acquire("u", "u:t", "ws1", 3)
    assert ledger.transfer("u", "u:t", "ws-other", "ws2") is False
    assert ledger.transfer("u", "u:missing", "ws1", "ws2") is False
    assert ledger.transfer("nobody", "u:t", "ws1", "ws2") is False
    assert ledger.holders("u") == {"u:t": "ws1"}


def test_a_renew_succeeds_only_for_the_holder() -> None:
    ledger = InMemoryLedger(node_limit=10)
    ledger.acquire("u", "u:t", "ws1", 3)
    assert ledger.renew("u", "u:t", "ws1") is True
    assert ledger.renew("u", "u:t", "ws2") is False
    assert ledger.renew("u", "u:missing", "ws1") is False
    assert ledger.renew("nobody", "u:t", "ws1") is False
    assert ledger.holders("u") == {"u:t": "ws1"}


def test_releasing_a_user_frees_all_of_its_slots_and_fixes_the_total() -> None:
    ledger = InMemoryLedger(node_limit=10)
    for index in range(3):
        ledger.acquire("a", f"a:{index}", f"wsa{index}", 5)
    ledger.acquire("b", "b:1", "wsb", 5)
    assert ledger.release_user("a") == 3
    assert ledger.usage("a") == 0
    assert ledger.holders("a") == {}
    assert ledger.total() == 1
    assert ledger.usage("b") == 1
    assert ledger.release_user("a") == 0
    assert ledger.release_user("nobody") == 0
    assert ledger.total() == 1


def test_holders_is_a_copy_of_the_users_slots() -> None:
    ledger = InMemoryLedger(node_limit=10)
    ledger.acquire("u", "u:t", "ws1", 3)
    holders = ledger.holders("u")
    holders["u:forged"] = "ws9"
    assert ledger.holders("u") == {"u:t": "ws1"}
    assert ledger.usage("u") == 1


def test_an_unknown_user_has_no_usage_and_no_holders() -> None:
    ledger = InMemoryLedger(node_limit=10)
    assert ledger.usage("nobody") == 0
    assert ledger.holders("nobody") == {}
    assert ledger.total() == 0


USERS = ("a", "b", "c")
KEYS = ("k1", "k2", "k3", "k4")
HOLDERS = ("ws1", "ws2", "ws3")
USER_LIMIT = 2
NODE_LIMIT = 4


class LedgerMachine(RuleBasedStateMachine):
    """InMemoryLedger against a dict of dicts, under random calls."""

    def __init__(self) -> None:
        super().__init__()
        self.ledger = InMemoryLedger(node_limit=NODE_LIMIT)
        self.model: dict[str, dict[str, str]] = {user: {} for user in USERS}

    def model_total(self) -> int:
        return sum(len(slots) for slots in self.model.values())

    @rule(
        user=st.sampled_from(USERS),
        key=st.sampled_from(KEYS),
        holder=st.sampled_from(HOLDERS),
        limit=st.integers(min_value=0, max_value=USER_LIMIT),
    )
    def acquire(self, user: str, key: str, holder: str, limit: int) -> None:
        slots = self.model[user]
        if key in slots:
            expected = AcquireResult.HELD
        elif len(slots) >= limit:
            expected = AcquireResult.USER_FULL
        elif self.model_total() >= NODE_LIMIT:
            expected = AcquireResult.NODE_FULL
        else:
            expected = AcquireResult.ACQUIRED
            slots[key] = holder
        assert self.ledger.acquire(user, key, holder, limit) is expected

    @rule(user=st.sampled_from(USERS), key=st.sampled_from(KEYS), holder=st.sampled_from(HOLDERS))
    def release(self, user: str, key: str, holder: str) -> None:
        slots = self.model[user]
        expected = slots.get(key) == holder
        if expected:
            del slots[key]
        assert self.ledger.release(user, key, holder) is expected

    @rule(
        user=st.sampled_from(USERS),
        key=st.sampled_from(KEYS),
        old=st.sampled_from(HOLDERS),
        new=st.sampled_from(HOLDERS),
    )
    def transfer(self, user: str, key: str, old: str, new: str) -> None:
        slots = self.model[user]
        expected = slots.get(key) == old
        if expected:
            slots[key] = new
        assert self.ledger.transfer(user, key, old, new) is expected

    @rule(user=st.sampled_from(USERS), key=st.sampled_from(KEYS), holder=st.sampled_from(HOLDERS))
    def renew(self, user: str, key: str, holder: str) -> None:
        assert self.ledger.renew(user, key, holder) is (self.model[user].get(key) == holder)

    @rule(user=st.sampled_from(USERS))
    def release_user(self, user: str) -> None:
        expected = len(self.model[user])
        self.model[user] = {}
        assert self.ledger.release_user(user) == expected

    @invariant()
    def matches_the_model(self) -> None:
        for user in USERS:
            assert self.ledger.holders(user) == self.model[user]
            assert self.ledger.usage(user) == len(self.model[user])

    @invariant()
    def no_user_exceeds_the_limit(self) -> None:
        for user in USERS:
            assert self.ledger.usage(user) <= USER_LIMIT

    @invariant()
    def the_total_stays_within_the_node_limit_and_sums_the_usages(self) -> None:
        total = self.ledger.total()
        assert 0 <= total <= NODE_LIMIT
        assert total == sum(self.ledger.usage(user) for user in USERS)
        assert total == self.model_total()


LedgerMachine.TestCase.settings = settings(max_examples=60, stateful_step_count=40, deadline=None)
test_the_ledger_matches_a_simple_model_under_random_calls = LedgerMachine.TestCase


# Thresholds


@pytest.mark.parametrize(
    ("used", "level"),
    [
        (0, Level.OK),
        (9, Level.OK),
        (10, Level.WARNING),
        (15, Level.WARNING),
        (16, Level.CRITICAL),
        (17, Level.CRITICAL),
        (18, Level.EMERGENCY),
        (20, Level.EMERGENCY),
        (25, Level.EMERGENCY),
    ],
)
def test_a_limit_of_20_is_classified_at_its_exact_boundaries(used: int, level: Level) -> None:
    assert Thresholds().classify(used, 20) is level


@pytest.mark.parametrize(
    ("used", "level"),
    [
        (4_999, Level.OK),
        (5_000, Level.WARNING),
        (7_999, Level.WARNING),
        (8_000, Level.CRITICAL),
        (8_999, Level.CRITICAL),
        (9_000, Level.EMERGENCY),
        (10_000, Level.EMERGENCY),
    ],
)
def test_a_limit_of_10000_is_classified_at_its_exact_boundaries(used: int, level: Level) -> None:
    assert Thresholds().classify(used, 10_000) is level


def test_a_limit_of_zero_is_an_emergency() -> None:
    assert Thresholds().classify(0, 0) is Level.EMERGENCY


def test_custom_shares_move_the_boundaries() -> None:
    thresholds = Thresholds(warning=0.25, critical=0.5, emergency=0.75)
    assert thresholds.classify(1, 4) is Level.WARNING
    assert thresholds.classify(2, 4) is Level.CRITICAL
    assert thresholds.classify(3, 4) is Level.EMERGENCY
    assert thresholds.classify(0, 4) is Level.OK


def test_each_level_calls_for_its_actions() -> None:
    thresholds = Thresholds()
    assert thresholds.actions(Level.OK) == ()
    assert thresholds.actions(Level.WARNING) == ()
    assert thresholds.actions(Level.CRITICAL) == (Action.EMERGENCY_CLEANUP,)
    assert thresholds.actions(Level.EMERGENCY) == (Action.EMERGENCY_CLEANUP, Action.SHED_IDLE)


def test_a_none_critical_action_leaves_only_shedding_at_emergency() -> None:
    thresholds = Thresholds(critical_action="none")
    assert thresholds.actions(Level.CRITICAL) == ()
    assert thresholds.actions(Level.EMERGENCY) == (Action.SHED_IDLE,)


def test_a_none_emergency_action_leaves_only_the_cleanup_at_emergency() -> None:
    thresholds = Thresholds(emergency_action="none")
    assert thresholds.actions(Level.CRITICAL) == (Action.EMERGENCY_CLEANUP,)
    assert thresholds.actions(Level.EMERGENCY) == (Action.EMERGENCY_CLEANUP,)


def test_no_actions_at_all_when_both_are_none() -> None:
    thresholds = Thresholds(critical_action="none", emergency_action="none")
    for level in Level:
        assert thresholds.actions(level) == ()


def test_the_largest_count_below_critical_of_20_is_15() -> None:
    thresholds = Thresholds()
    assert thresholds.below_critical(20) == 15
    assert thresholds.classify(15, 20) < Level.CRITICAL
    assert thresholds.classify(16, 20) >= Level.CRITICAL


def test_the_largest_count_below_critical_of_small_limits() -> None:
    thresholds = Thresholds()
    assert thresholds.below_critical(10) == 7
    assert thresholds.below_critical(1) == 0
    assert thresholds.below_critical(0) == 0


def test_levels_are_ordered_from_ok_to_emergency() -> None:
    assert Level.OK < Level.WARNING < Level.CRITICAL < Level.EMERGENCY
    assert sorted([Level.EMERGENCY, Level.OK, Level.CRITICAL, Level.WARNING]) == list(Level)


def test_levels_have_lower_case_labels() -> None:
    assert [level.label for level in Level] == ["ok", "warning", "critical", "emergency"]


# Restart


def test_a_permanent_child_is_always_restarted() -> None:
    assert should_restart("permanent", crashed=True)
    assert should_restart("permanent", crashed=False)


def test_a_transient_child_is_restarted_only_after_a_crash() -> None:
    assert should_restart("transient", crashed=True)
    assert not should_restart("transient", crashed=False)


def test_a_temporary_child_is_never_restarted() -> None:
    assert not should_restart("temporary", crashed=True)
    assert not should_restart("temporary", crashed=False)


def test_three_restarts_in_ten_seconds_are_allowed_and_the_fourth_is_refused() -> None:
    clock = ManualClock(start=0.0)
    intensity = RestartIntensity(intensity=3, period=10.0)
    assert intensity.allow(clock.monotonic())
    clock.advance(1.0)
    assert intensity.allow(clock.monotonic())
    clock.advance(1.0)
    assert intensity.allow(clock.monotonic())
    assert intensity.recent == 3
    clock.advance(1.0)
    assert not intensity.allow(clock.monotonic())
    assert intensity.recent == 3


def test_a_restart_is_allowed_again_once_the_oldest_is_ten_seconds_old() -> None:
    clock = ManualClock(start=0.0)
    intensity = RestartIntensity(intensity=3, period=10.0)
    for _ in range(3):
        assert intensity.allow(clock.monotonic())
        clock.advance(1.0)
    clock.advance(6.5)  # t = 9.5: the oldest is not yet 10 s old
    assert not intensity.allow(clock.monotonic())
    clock.advance(0.5)  # t = 10.0: the oldest (t = 0) is exactly 10 s old and has expired
    assert clock.monotonic() == 10.0
    assert intensity.allow(clock.monotonic())
    assert not intensity.allow(clock.monotonic())


def test_restarts_spread_out_in_time_are_always_allowed() -> None:
    clock = ManualClock(start=0.0)
    intensity = RestartIntensity(intensity=3, period=10.0)
    for _ in range(20):
        assert intensity.allow(clock.monotonic())
        clock.advance(4.0)
    assert intensity.recent <= 3


def test_a_max_restarts_of_zero_never_allows_a_restart() -> None:
    clock = ManualClock(start=0.0)
    intensity = RestartIntensity(intensity=0, period=10.0)
    for _ in range(5):
        assert not intensity.allow(clock.monotonic())
        clock.advance(100.0)
    assert intensity.recent == 0


# Reaping

POLICY = ReapPolicy(idle_timeout=60.0, keepalive_deadline=30.0, cleanup_timeout=5.0)
NOW = 1_000.0


def child(
    websocket_id: str = "ws",
    state: str = "connected",
    idle: float = 0.0,
    unseen: float | None = None,
) -> ChildView:
    return ChildView(
        websocket_id=websocket_id,
        state=state,  # type: ignore[arg-type]
        last_activity=NOW - idle,
        last_seen=None if unseen is None else NOW - unseen,
    )


def test_a_disconnected_child_is_closed() -> None:
    assert POLICY.not_live(child(state="disconnected"), NOW) is ReapReason.CLOSED


def test_a_disconnected_child_is_closed_before_any_other_reason() -> None:
    stale = child(state="disconnected", idle=1_000.0, unseen=1_000.0)
    assert POLICY.not_live(stale, NOW) is ReapReason.CLOSED


def test_a_child_unseen_past_the_keepalive_deadline_missed_its_keepalive() -> None:
    assert POLICY.not_live(child(unseen=30.001), NOW) is ReapReason.KEEPALIVE


def test_a_child_unseen_exactly_at_the_keepalive_deadline_is_live() -> None:
    assert POLICY.not_live(child(unseen=30.0), NOW) is None


def test_a_keepalive_miss_is_reported_before_idleness() -> None:
    assert POLICY.not_live(child(idle=120.0, unseen=120.0), NOW) is ReapReason.KEEPALIVE


def test_a_child_without_keepalive_reports_is_never_a_keepalive_miss() -> None:
    assert POLICY.not_live(child(unseen=None, idle=59.0), NOW) is None
    assert POLICY.not_live(child(unseen=None, idle=61.0), NOW) is ReapReason.IDLE


def test_a_child_idle_past_the_idle_timeout_is_idle() -> None:
    assert POLICY.not_live(child(idle=60.001, unseen=1.0), NOW) is ReapReason.IDLE


def test_a_child_idle_exactly_at_the_idle_timeout_is_live() -> None:
    assert POLICY.not_live(child(idle=60.0, unseen=1.0), NOW) is None


@pytest.mark.parametrize("state", ["connecting", "connected", "closing"])
def test_a_recently_active_child_is_live(state: str) -> None:
    assert POLICY.not_live(child(state=state, idle=1.0, unseen=1.0), NOW) is None


def test_a_sweep_lists_every_child_that_is_not_live_with_its_reason() -> None:
    children = [
        child("live", idle=1.0, unseen=1.0),
        child("closed", state="disconnected"),
        child("silent", unseen=31.0),
        child("idle", idle=61.0),
        child("edge", idle=60.0, unseen=30.0),
    ]
    assert POLICY.sweep(children, NOW) == [
        ("closed", ReapReason.CLOSED),
        ("silent", ReapReason.KEEPALIVE),
        ("idle", ReapReason.IDLE),
    ]


def test_a_sweep_of_live_children_finds_nothing() -> None:
    assert POLICY.sweep([child("a"), child("b", idle=10.0)], NOW) == []
    assert POLICY.sweep([], NOW) == []


def test_no_sweep_can_find_a_child_not_live_before_the_next_due_time() -> None:
    children = [child("a", idle=10.0, unseen=5.0), child("b", idle=50.0, unseen=None)]
    due = POLICY.next_due(children, NOW)
    assert due == NOW + 10.0  # b: idle 50 of 60 s
    assert POLICY.sweep(children, due) == []
    assert POLICY.sweep(children, due + 0.001) == [("b", ReapReason.IDLE)]


def test_the_next_due_time_is_never_later_than_the_shortest_timeout_from_now() -> None:
    assert POLICY.next_due([], NOW) == NOW + 30.0  # a child admitted later, or starting pongs
    assert POLICY.next_due([child("fresh", idle=0.0, unseen=0.0)], NOW) == NOW + 30.0


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.floats(0.0, 100.0), st.one_of(st.none(), st.floats(0.0, 100.0))),
        max_size=6,
    ),
    st.floats(0.0, 200.0),
)
def test_a_sweep_skipped_until_the_next_due_time_would_have_found_nothing(
    ages: list[tuple[float, float | None]], later: float
) -> None:
    children = [child(f"c{n}", idle=idle, unseen=unseen) for n, (idle, unseen) in enumerate(ages)]
    live = [c for c in children if POLICY.not_live(c, NOW) is None]
    due = POLICY.next_due(live, NOW)
    at = NOW + later
    if at < due:
        assert POLICY.sweep(live, at) == []


def test_a_cleanup_is_overdue_exactly_at_the_cleanup_timeout() -> None:
    clock = ManualClock(start=100.0)
    since = clock.monotonic()
    clock.advance(4.75)
    assert not POLICY.is_overdue(since, clock.monotonic())
    clock.advance(0.25)
    assert clock.monotonic() - since == 5.0
    assert POLICY.is_overdue(since, clock.monotonic())
    clock.advance(10.0)
    assert POLICY.is_overdue(since, clock.monotonic())


def test_the_oldest_idle_child_is_the_connected_one_idle_the_longest() -> None:
    children = [child("a", idle=5.0), child("b", idle=50.0), child("c", idle=20.0)]
    assert ReapPolicy.oldest_idle(children) == "b"


def test_the_oldest_idle_child_ignores_children_that_are_not_connected() -> None:
    children = [
        child("closing", state="closing", idle=500.0),
        child("gone", state="disconnected", idle=400.0),
        child("new", state="connecting", idle=300.0),
        child("a", idle=5.0),
    ]
    assert ReapPolicy.oldest_idle(children) == "a"


def test_there_is_no_oldest_idle_child_without_a_connected_one() -> None:
    assert ReapPolicy.oldest_idle([]) is None
    assert ReapPolicy.oldest_idle([child("closing", state="closing")]) is None


def test_shedding_closes_the_longest_idle_first_until_keep_remain() -> None:
    children = [
        child("a", idle=10.0),
        child("b", idle=40.0),
        child("c", idle=30.0),
        child("d", idle=20.0),
    ]
    assert ReapPolicy.shed(children, NOW, keep=2, min_idle=0.0) == ["b", "c"]
    assert ReapPolicy.shed(children, NOW, keep=0, min_idle=0.0) == ["b", "c", "d", "a"]


def test_shedding_nothing_when_no_more_than_keep_are_connected() -> None:
    children = [child("a", idle=10.0), child("b", idle=40.0)]
    assert ReapPolicy.shed(children, NOW, keep=2, min_idle=0.0) == []
    assert ReapPolicy.shed(children, NOW, keep=5, min_idle=0.0) == []


def test_shedding_spares_children_idle_less_than_min_idle() -> None:
    children = [
        child("a", idle=10.0),
        child("b", idle=40.0),
        child("c", idle=30.0),
        child("d", idle=20.0),
    ]
    assert ReapPolicy.shed(children, NOW, keep=1, min_idle=25.0) == ["b", "c"]
    assert ReapPolicy.shed(children, NOW, keep=1, min_idle=30.0) == ["b", "c"]
    assert ReapPolicy.shed(children, NOW, keep=1, min_idle=100.0) == []


def test_shedding_counts_and_closes_only_connected_children() -> None:
    children = [
        child("closing", state="closing", idle=500.0),
        child("gone", state="disconnected", idle=500.0),
        child("a", idle=10.0),
        child("b", idle=40.0),
    ]
    assert ReapPolicy.shed(children, NOW, keep=1, min_idle=0.0) == ["b"]


@pytest.mark.parametrize(("limit", "ratio", "at"), [(100, 0.07, 7), (25, 0.28, 7), (50, 0.14, 7)])
def test_a_sweep_is_due_once_used_slots_reach_the_proactive_ratio_despite_float_rounding(
    limit: int, ratio: float, at: int
) -> None:
    policy = QuotaPolicy(limit, ratio)
    assert policy.proactive_at == at
    assert policy.should_sweep(at) and not policy.should_sweep(at - 1)


def test_a_refused_acquire_leaves_no_trace_of_the_user_in_the_ledger() -> None:
    ledger = InMemoryLedger(node_limit=1)
    assert ledger.acquire("a", "a:t1", "ws1", 1) is AcquireResult.ACQUIRED
    assert ledger.acquire("b", "b:t1", "ws2", 1) is AcquireResult.NODE_FULL
    assert ledger._slots.keys() == {"a"}


def test_the_pool_takes_managers_up_to_its_size_counting_those_on_the_way() -> None:
    pool = PoolPolicy(size=2, idle_seconds=30.0)
    assert pool.has_room(0) and pool.has_room(1)
    assert not pool.has_room(2) and not pool.has_room(1, on_the_way=1)
    assert not PoolPolicy(size=0, idle_seconds=30.0).has_room(0)


def test_a_pooled_manager_expires_exactly_at_its_idle_time() -> None:
    pool = PoolPolicy(size=2, idle_seconds=30.0)
    assert not pool.expired(idle_since=100.0, now=129.5)
    assert pool.expired(idle_since=100.0, now=130.0)


def test_new_users_are_refused_only_at_the_emergency_level() -> None:
    refused = [level for level in Level if Thresholds.refuses_new_users(level)]
    assert refused == [Level.EMERGENCY]


def test_the_background_sweep_is_due_exactly_one_interval_after_the_last() -> None:
    schedule = CleanupSchedule(background_interval=120.0, empty_supervisor_ttl=60.0)
    assert not schedule.background_due(last=1000.0, now=1119.5)
    assert schedule.background_due(last=1000.0, now=1120.0)


def test_a_supervisor_is_empty_with_no_slot_no_pooled_manager_and_no_admission_coming() -> None:
    assert CleanupSchedule.is_empty(used=0, pool_idle=0, admits_seen=3, admits_sent=3)
    assert not CleanupSchedule.is_empty(used=1, pool_idle=0, admits_seen=3, admits_sent=3)
    assert not CleanupSchedule.is_empty(used=0, pool_idle=1, admits_seen=3, admits_sent=3)
    assert not CleanupSchedule.is_empty(used=0, pool_idle=0, admits_seen=3, admits_sent=4)


def test_an_empty_supervisor_is_retired_once_its_ttl_has_passed() -> None:
    schedule = CleanupSchedule(background_interval=120.0, empty_supervisor_ttl=60.0)
    assert not schedule.retire(empty_since=10.0, now=69.9)
    assert schedule.retire(empty_since=10.0, now=70.0)


@given(
    since=st.floats(min_value=0.0, max_value=1e6, allow_nan=False),
    later=st.floats(min_value=0.0, max_value=100.0, allow_nan=False),
)
@settings(max_examples=500)
def test_a_close_is_overdue_from_the_time_overdue_at_gives_and_not_before(
    since: float, later: float
) -> None:
    at = POLICY.overdue_at(since)
    assert POLICY.is_overdue(since, at + later)
    assert not POLICY.is_overdue(since, since + POLICY.cleanup_timeout * 0.999)


@given(
    since=st.floats(min_value=0.0, max_value=1e6, allow_nan=False),
    later=st.floats(min_value=0.0, max_value=100.0, allow_nan=False),
)
def test_a_pooled_manager_expires_from_the_time_expires_at_gives_and_not_before(
    since: float, later: float
) -> None:
    pool = PoolPolicy(size=2, idle_seconds=30.0)
    assert pool.expired(since, pool.expires_at(since) + later)
    assert not pool.expired(since, since + 29.9)


def test_the_schedule_names_when_the_next_background_sweep_and_a_retirement_are_due() -> None:
    schedule = CleanupSchedule(background_interval=5.0, empty_supervisor_ttl=2.0)
    assert schedule.next_background(100.0) == 105.0
    assert not schedule.background_due(100.0, 104.9) and schedule.background_due(100.0, 105.0)
    assert schedule.retire_at(50.0) == 52.0
    assert not schedule.retire(50.0, 51.9) and schedule.retire(50.0, 52.0)


@pytest.mark.parametrize("answered_at", [0.0, 0.013, 7.5, 1234.5678, 99999.999])
@pytest.mark.parametrize(
    ("interval", "timeout"), [(1.0, 1.0), (20.0, 20.0), (0.2, 5.0), (5.0, 0.2)]
)
def test_a_keepalive_on_the_grid_pings_early_and_still_checks_within_interval_plus_timeout(
    answered_at: float, interval: float, timeout: float
) -> None:
    grid = KeepaliveGrid.for_settings(interval, timeout)
    ping = grid.time_of(grid.ping_slot(answered_at, now=answered_at))
    assert answered_at < ping <= answered_at + interval - grid.step
    for late in (0.0, grid.step / 2):  # the ping task may run a little after its slot
        check = grid.time_of(grid.check_slot(ping + late))
        assert ping + late + timeout <= check <= answered_at + interval + timeout + late + 1e-9


def test_a_ping_slot_already_past_moves_to_the_next_slot_after_now() -> None:
    grid = KeepaliveGrid(interval=1.0, timeout=1.0, step=0.1)
    assert grid.ping_slot(answered_at=0.0, now=5.0) == 51
    with pytest.raises(ValueError, match="step must be > 0"):
        KeepaliveGrid(interval=1.0, timeout=1.0, step=0.0)


def test_a_quota_that_rejects_never_looks_for_a_connection_to_evict() -> None:
    policy = QuotaPolicy(3, on_full="reject")
    assert [policy.may_evict(used) for used in (0, 2, 3, 4)] == [False] * 4


def test_a_quota_that_evicts_looks_for_a_connection_to_evict_only_when_full() -> None:
    policy = QuotaPolicy(3, on_full="evict_oldest_idle")
    assert [policy.may_evict(used) for used in (0, 2, 3, 4)] == [False, False, True, True]
    assert policy.decide(2, key_held=False) is Verdict.ADMIT  # below: no victim needed
