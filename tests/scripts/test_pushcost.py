"""``scripts/pushcost.py``: what crossing nodes adds, judged run by run against a PING."""

from __future__ import annotations

from types import ModuleType

import pytest

from tests.helpers import import_script

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def pushcost(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    return import_script(monkeypatch, "pushcost")


def run(
    local: tuple[float, float], cross: tuple[float, float], ping: tuple[float, float]
) -> dict[str, float]:
    return {
        "push_local_frame_p50_ms": local[0], "push_local_frame_p99_ms": local[1],
        "push_cross_frame_p50_ms": cross[0], "push_cross_frame_p99_ms": cross[1],
        "redis_ping_p50_ms": ping[0], "redis_ping_p99_ms": ping[1],
    }  # fmt: skip


def test_a_run_is_met_where_crossing_adds_no_more_than_its_own_ping(pushcost: ModuleType) -> None:
    found = pushcost.added(run((0.80, 1.30), (0.90, 1.70), (0.12, 0.25)))
    assert found["added_p50_ms"] == pytest.approx(0.10)
    assert found["added_p99_ms"] == pytest.approx(0.40)
    assert found["met_p50"] == 1.0
    assert found["met_p99"] == 0.0
    assert found["ping_p99_ms"] == 0.25


def test_a_cross_node_push_faster_than_a_local_one_adds_a_negative_time_and_is_met(
    pushcost: ModuleType,
) -> None:
    found = pushcost.added(run((0.80, 1.30), (0.75, 1.20), (0.06, 0.20)))
    assert found["added_p50_ms"] == pytest.approx(-0.05)
    assert (found["met_p50"], found["met_p99"]) == (1.0, 1.0)
