"""CleanupSchedule: the background sweep and the retirement of empty supervisors."""

from __future__ import annotations

from actors.policies.schedule import CleanupSchedule


def test_the_background_sweep_is_due_exactly_one_interval_after_the_last() -> None:
    schedule = CleanupSchedule(background_interval=120.0, empty_supervisor_ttl=60.0)
    assert not schedule.background_due(last=1000.0, now=1119.5)
    assert schedule.background_due(last=1000.0, now=1120.0)


def test_a_supervisor_is_empty_with_no_slot_and_no_admission_coming() -> None:
    assert CleanupSchedule.is_empty(used=0, admits_seen=3, admits_sent=3)
    assert not CleanupSchedule.is_empty(used=1, admits_seen=3, admits_sent=3)
    assert not CleanupSchedule.is_empty(used=0, admits_seen=3, admits_sent=4)


def test_an_empty_supervisor_is_retired_once_its_ttl_has_passed() -> None:
    schedule = CleanupSchedule(background_interval=120.0, empty_supervisor_ttl=60.0)
    assert not schedule.retire(empty_since=10.0, now=69.9)
    assert schedule.retire(empty_since=10.0, now=70.0)


def test_the_schedule_names_when_the_next_background_sweep_and_a_retirement_are_due() -> None:
    schedule = CleanupSchedule(background_interval=5.0, empty_supervisor_ttl=2.0)
    assert schedule.next_background(100.0) == 105.0
    assert not schedule.background_due(100.0, 104.9) and schedule.background_due(100.0, 105.0)
    assert schedule.retire_at(50.0) == 52.0
    assert not schedule.retire(50.0, 51.9) and schedule.retire(50.0, 52.0)
