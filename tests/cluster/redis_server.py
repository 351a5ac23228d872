"""A real ``redis-server`` on a loopback port, started and stopped by the tests.

The class lives in ``scripts/_toolkit.py``, which the benchmark shares (``bench --redis``).
``scripts/test`` installs the server on a machine that lacks it; a test that cannot find it
fails with that advice (it never skips).
"""

from __future__ import annotations

from _toolkit import RedisServer, redis_server_binary, running_redis

__all__ = ["RedisServer", "redis_server_binary", "running_redis"]
