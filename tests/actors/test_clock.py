"""The injectable clocks."""

from __future__ import annotations

import itertools

import pytest

from actors.clock import Clock, ManualClock, SystemClock


def test_a_manual_clock_stands_still_until_told_to_move() -> None:
    clock = ManualClock(start=5.0)
    assert clock.monotonic() == 5.0
    assert clock.monotonic() == 5.0


def test_a_manual_clock_advances_by_exactly_the_amount_given() -> None:
    clock = ManualClock(start=5.0)
    assert clock.advance(2.5) == 7.5
    assert clock.monotonic() == 7.5
    assert clock.advance(0) == 7.5
    assert clock.monotonic() == 7.5


def test_a_manual_clock_refuses_to_go_backwards() -> None:
    clock = ManualClock(start=5.0)
    with pytest.raises(ValueError, match="backwards"):
        clock.advance(-0.001)
    assert clock.monotonic() == 5.0


def test_a_manual_clocks_wall_time_follows_its_monotonic_time() -> None:
    clock = ManualClock(start=10.0, wall_offset=1_000.0)
    assert clock.wall() == 1_010.0
    clock.advance(3.0)
    assert clock.wall() == 1_013.0
    assert clock.wall() - clock.monotonic() == 1_000.0


def test_a_manual_clock_starts_at_its_defaults() -> None:
    clock = ManualClock()
    assert clock.monotonic() == 1_000.0
    assert clock.wall() == 1_700_001_000.0


def test_a_system_clocks_monotonic_time_never_decreases() -> None:
    clock = SystemClock()
    readings = [clock.monotonic() for _ in range(10_000)]
    assert all(earlier <= later for earlier, later in itertools.pairwise(readings))


def test_a_system_clocks_wall_time_is_an_epoch_time() -> None:
    assert SystemClock().wall() > 1_600_000_000.0


def test_both_clocks_satisfy_the_clock_protocol() -> None:
    clocks: list[Clock] = [SystemClock(), ManualClock()]
    for clock in clocks:
        assert isinstance(clock.monotonic(), float)
        assert isinstance(clock.wall(), float)
