"""Every test leaves no actor, ticker thread, script link or server behind.

The fixture ``redis_server`` (a real ``redis-server`` per test, on a loopback
port) is here for every tree that needs one: the cluster suite and the tests of
``supervisor.cluster``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pykka
import pytest

from tests.cluster.redis_server import RedisServer, running_redis
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


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A fresh ``redis-server`` for this test; stopped (and its data gone) after it."""
    with running_redis() as server:
        yield server


@pytest.fixture(autouse=True)
def _no_redis_link_left_behind() -> Iterator[None]:
    """Fail a test that leaves a ledger's script link (its thread and socket) open."""
    yield
    left = [t.name for t in threading.enumerate() if t.name == "redis-link"]
    assert left == [], f"script links left open: {len(left)}"
