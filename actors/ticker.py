"""The tree's one timer: a thread that sends :class:`~actors.messages.Tick` to the root.

pykka has no timers; rather than a thread per timeout, one ticker tells the
root the time every ``interval`` seconds and the root passes it down to the
supervisors that have work due (:attr:`~actors.messages.UsageReport.wake_at`). Unit
tests with a manual clock do not start it and send ticks themselves.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from typing import Any

import pykka

from actors.messages import Tick
from supervisor.clock import Clock

__all__ = ["Ticker", "stop_and_wait"]


class Ticker:
    """Sends ``Tick(clock.monotonic())`` to ``target`` every ``interval`` seconds."""

    def __init__(self, target: pykka.ActorRef[Any], clock: Clock, interval: float) -> None:
        self._target = target
        self._clock = clock
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ws-supervisor-ticker", daemon=True)

    def start(self) -> Ticker:
        """Start the ticker thread."""
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop ticking and wait for the thread to end."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self._target.tell(Tick(self._clock.monotonic()))
            except pykka.ActorDeadError:
                return


def stop_and_wait(refs: Iterable[pykka.ActorRef[Any]], timeout: float) -> int:
    """Stop every actor in ``refs``, waiting up to ``timeout`` seconds in all.

    Shutdown waits in real time, whatever clock the tree uses. Returns how
    many actors had not stopped by then.
    """
    futures = [ref.stop(block=False) for ref in refs]
    deadline = time.monotonic() + timeout
    late = 0
    for future in futures:
        try:
            future.get(timeout=max(0.0, deadline - time.monotonic()))
        except pykka.Timeout:
            late += 1
    return late
