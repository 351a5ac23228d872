"""ReapPolicy: which connections are no longer live, whom to evict or shed, when to abandon."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors.clock import ManualClock
from actors.policies.reaping import ChildView, EmergencyCleanup, ReapPolicy, ReapReason

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


# --- an emergency cleanup's wall time -----------------------------------------------------------


def test_an_emergency_cleanup_lasts_from_its_start_to_the_last_connection_let_go() -> None:
    cleanup = EmergencyCleanup()
    cleanup.begin(100.0, ["ws_a", "ws_b"])
    assert cleanup.running and cleanup.pending == 2
    assert cleanup.settle(100.0) is None
    assert cleanup.let_go("ws_a", 101.0) is None
    assert cleanup.let_go("ws_b", 115.0) == 15.0
    assert not cleanup.running and cleanup.pending == 0


def test_an_emergency_cleanup_that_reaped_nothing_ends_when_it_settles() -> None:
    cleanup = EmergencyCleanup()
    cleanup.begin(100.0, [])
    assert cleanup.settle(100.5) == 0.5
    assert cleanup.settle(200.0) is None  # ended: nothing more to report


def test_a_cleanup_started_before_it_was_handled_counts_the_wait() -> None:
    cleanup = EmergencyCleanup()
    cleanup.begin(60.0, [])  # the root decided at 60; the supervisor got to it at 95
    assert cleanup.settle(95.0) == 35.0


def test_a_cleanup_asked_while_one_runs_joins_it_and_the_whole_is_timed() -> None:
    """A critical cleanup, then a shed at emergency: one cleanup, beyond any one close's cap."""
    cleanup = EmergencyCleanup()
    cleanup.begin(0.0, ["ws_a"])
    cleanup.begin(14.0, ["ws_b"])  # a shed while ws_a's close is still pending
    assert cleanup.let_go("ws_a", 15.0) is None  # abandoned at the 15 s cap
    cleanup.begin(28.0, ["ws_c"])
    assert cleanup.let_go("ws_b", 29.0) is None
    assert cleanup.let_go("ws_c", 43.0) == 43.0


def test_a_connection_let_go_that_the_cleanup_did_not_reap_changes_nothing() -> None:
    cleanup = EmergencyCleanup()
    assert cleanup.let_go("ws_a", 5.0) is None
    cleanup.begin(0.0, ["ws_a"])
    assert cleanup.let_go("ws_other", 5.0) is None
    assert cleanup.pending == 1


def test_an_earlier_start_given_later_moves_the_start_back() -> None:
    cleanup = EmergencyCleanup()
    cleanup.begin(10.0, ["ws_a"])
    cleanup.begin(5.0, [])
    assert cleanup.let_go("ws_a", 20.0) == 15.0
