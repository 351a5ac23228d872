"""Restart types and restart intensity."""

from __future__ import annotations

from actors.clock import ManualClock
from actors.policies.restart import RestartIntensity, should_restart


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
