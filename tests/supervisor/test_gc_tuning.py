"""The daemon's collector settings."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from supervisor.gc_tuning import DAEMON_THRESHOLDS, tune

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def restored() -> Iterator[None]:
    """Give the test process its own settings back."""
    before = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*before)


@pytest.mark.usefixtures("restored")
def test_tune_freezes_every_object_alive_and_raises_the_young_threshold() -> None:
    gc.unfreeze()
    alive = len(gc.get_objects())
    frozen = tune()
    assert frozen == gc.get_freeze_count() >= alive // 2  # what a collection left alive
    assert len(gc.get_objects()) < alive // 10  # the collector no longer walks them
    assert gc.get_threshold() == DAEMON_THRESHOLDS
