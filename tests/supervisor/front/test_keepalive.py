"""The keepalive scheduler's registry: one per loop and settings, gone with its loop."""

from __future__ import annotations

import asyncio
import gc
import weakref

from supervisor.front.keepalive import Keepalive, KeepaliveScheduler


def test_one_scheduler_serves_every_connection_of_a_loop_with_the_same_settings() -> None:
    async def schedulers() -> tuple[KeepaliveScheduler, ...]:
        same = Keepalive(1.0, 1.0)
        return (
            KeepaliveScheduler.of(same),
            KeepaliveScheduler.of(same),
            KeepaliveScheduler.of(Keepalive(2.0, 1.0)),
        )

    first, again, other = asyncio.run(schedulers())
    assert first is again and other is not first


def test_a_loop_that_has_ended_is_not_kept_alive_by_its_keepalive_scheduler() -> None:
    loop = asyncio.new_event_loop()

    async def use() -> None:
        KeepaliveScheduler.of(Keepalive(1.0, 1.0))

    loop.run_until_complete(use())
    loop.close()
    ended = weakref.ref(loop)
    del loop
    gc.collect()
    assert ended() is None
