"""Every test leaves no actor, ticker thread or server behind."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pykka
import pytest

from tests.helpers import actor_threads


@pytest.fixture(autouse=True)
def _no_actor_left_behind() -> Iterator[None]:
    """Stop every actor after the test, then fail it if any actor thread lives on."""
    yield
    for ref in pykka.ActorRegistry.get_all():
        ref.stop(block=False)
    deadline = time.monotonic() + 10.0
    while actor_threads() and time.monotonic() < deadline:
        time.sleep(0.01)
    left = [t.name for t in actor_threads()]
    if left:
        pytest.fail(f"actor threads left behind: {left}")
