"""Fixtures for tests of the actors: a fresh metrics registry and a manual clock."""

from __future__ import annotations

import pytest

from actors.clock import ManualClock
from supervisor.admin.metrics import MetricsObserver


@pytest.fixture
def metrics() -> MetricsObserver:
    return MetricsObserver()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()
