"""The keepalive's grid: when a ping goes out, and when its pong must have come."""

from __future__ import annotations

import pytest

from supervisor.front.keepalive import KeepaliveGrid


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


@pytest.mark.parametrize(
    ("interval", "timeout", "step"), [(20.0, 20.0, 1.0), (0.2, 5.0, 0.01), (5.0, 0.2, 0.01)]
)
def test_the_grid_for_settings_has_twenty_steps_over_the_shorter_of_interval_and_timeout(
    interval: float, timeout: float, step: float
) -> None:
    assert KeepaliveGrid.for_settings(interval, timeout).step == pytest.approx(step)
    assert KeepaliveGrid.for_settings(interval, timeout, points=4).step == pytest.approx(step * 5)


def test_a_slot_comes_at_its_number_of_steps() -> None:
    grid = KeepaliveGrid(interval=1.0, timeout=1.0, step=0.25)
    assert [grid.time_of(slot) for slot in range(5)] == [0.0, 0.25, 0.5, 0.75, 1.0]


def test_a_ping_sent_on_a_slot_is_checked_exactly_timeout_later_and_never_before() -> None:
    grid = KeepaliveGrid(interval=1.0, timeout=0.5, step=0.25)
    assert grid.check_slot(sent_at=1.0) == 6  # 1.5 s: on the grid, not a slot later
    assert grid.check_slot(sent_at=1.01) == 7  # 1.51 s: the first slot at or after it


@pytest.mark.parametrize("name", ["interval", "timeout", "step"])
@pytest.mark.parametrize("value", [0.0, -1.0, float("nan")])
def test_a_grid_with_a_setting_not_above_zero_is_refused_naming_it(name: str, value: float) -> None:
    settings = {"interval": 1.0, "timeout": 1.0, "step": 0.1, name: value}
    with pytest.raises(ValueError, match=f"^{name} must be > 0"):
        KeepaliveGrid(**settings)
