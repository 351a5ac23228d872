"""A Redis master, a replica and three sentinels on loopback, started and stopped by the tests.

The classes live in ``scripts/_sentinels.py``, which the benchmark shares
(``bench --redis`` runs on a Sentinel-managed Redis too). ``scripts/test``
installs redis-server, which is also the sentinel (``redis-server FILE --sentinel``).
"""

from __future__ import annotations

from _sentinels import MASTER_NAME, Relay, SentinelSet, running_sentinels

__all__ = ["MASTER_NAME", "Relay", "SentinelSet", "running_sentinels"]
