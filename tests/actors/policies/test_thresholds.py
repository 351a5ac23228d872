"""Thresholds: ok / warning / critical / emergency, and the actions of each level."""

from __future__ import annotations

import pytest

from actors.policies.thresholds import Action, Level, Thresholds


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


def test_new_users_are_refused_only_at_the_emergency_level() -> None:
    refused = [level for level in Level if Thresholds.refuses_new_users(level)]
    assert refused == [Level.EMERGENCY]
