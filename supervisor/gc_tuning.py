"""The daemon's garbage-collector settings: fewer, cheaper collections under churn.

With CPython's defaults (700, 10, 10) a young collection runs every 700
container allocations, and every tenth of those a collection of the middle
generation. Under connection churn the daemon ran about 33 young, 3 middle
and 0.3 full collections a second: 4.5 s of collector time in a 55 s load
test, with full collections of up to 430 ms that stop the loop and every
actor worker alike. Most of what a connection allocates dies with it, and
the cyclic garbage it leaves (asyncio's transport and its socket) is found
as well by fewer, larger young collections.

The daemon's process calls :func:`tune` once, after its imports and before
it serves: what exists by then (modules, classes, the config: about 50,000
objects) is moved out of the collector's reach for good (``gc.freeze``), and
the young threshold becomes 10,000. An application that embeds the tree
keeps its own settings: its process is not ours to tune.
"""

from __future__ import annotations

import gc

__all__ = ["DAEMON_THRESHOLDS", "tune"]

DAEMON_THRESHOLDS = (10_000, 10, 10)
"""Young-generation allocations, then young and middle collections, between collections."""


def tune(thresholds: tuple[int, int, int] = DAEMON_THRESHOLDS) -> int:
    """Collect once, freeze what survives, set ``thresholds``; the objects now frozen."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*thresholds)
    return gc.get_freeze_count()
