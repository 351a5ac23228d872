"""Fixtures of the cluster tests: a real redis-server per test, on a loopback port."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.cluster.redis_server import RedisServer, running_redis


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A fresh ``redis-server`` for this test; stopped (and its data gone) after it."""
    with running_redis() as server:
        yield server
