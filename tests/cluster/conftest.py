"""Fixtures of the cluster tests: a real redis-server per test, on a loopback port."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from tests.cluster.redis_server import RedisServer, running_redis


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
