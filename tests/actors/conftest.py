"""Fixtures for tests of the actors: metrics, a manual clock, and two running dispatchers."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from actors._runtime.dispatch import Dispatcher
from actors.clock import ManualClock
from supervisor.admin.metrics import MetricsObserver


@pytest.fixture
def metrics() -> MetricsObserver:
    return MetricsObserver()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def managers() -> Iterator[Dispatcher]:
    """A running dispatcher for manager actors (and recorders), stopped after the test."""
    running = Dispatcher(workers=2, name="ws-supervisor-test-managers").start()
    yield running
    running.stop(timeout=5)


@pytest.fixture
def system() -> Iterator[Dispatcher]:
    """A running one-worker dispatcher for supervisors and the root, stopped after the test."""
    running = Dispatcher(workers=1, name="ws-supervisor-test-system").start()
    yield running
    running.stop(timeout=5)
