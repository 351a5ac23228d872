"""The tree's one timer: a thread that sends :class:`~actors.messages.Tick` to the root.

pykka has no timers; rather than a thread per timeout, one ticker tells the
root the time and the root passes it down to the supervisors that have work
due (:attr:`~actors.messages.UsageReport.wake_at`). The ticker sleeps until
the root's :class:`Alarm` says something is due: never sooner than
``interval`` after the last tick (the resolution of every timeout), never
later than :data:`QUIET_TICK` after it (a safety net). An idle tree is
ticked about once a second, not ``1 / interval`` times. Unit tests with a
manual clock do not start it and send ticks themselves.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from typing import Any

import pykka

from actors.clock import Clock
from actors.messages import Tick

__all__ = ["QUIET_TICK", "Alarm", "Ticker", "stop_and_wait"]

QUIET_TICK = 1.0
"""Seconds at most between two ticks, whatever the alarm says (or ``interval``, if longer)."""


class Alarm:
    """When the root next has work: the ticker sleeps until then. Any thread.

    The root lowers it (:meth:`request`) when a report brings an earlier
    time, and sets it exactly (:meth:`set`) after each tick, from every
    time it knows of. Until the first :meth:`set` it is due at once.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._due = float("-inf")
        self._closed = False

    def request(self, at: float) -> None:
        """Be due by ``at`` at the latest (the root's thread)."""
        if at < self._due:  # most reports change nothing: no lock
            with self._cond:
                if at < self._due:
                    self._due = at
                    self._cond.notify_all()

    def set(self, at: float) -> None:
        """Be due at ``at`` exactly (the root's thread, after a tick)."""
        with self._cond:
            earlier = at < self._due
            self._due = at
            if earlier:
                self._cond.notify_all()

    def close(self) -> None:
        """Wake the waiter for good (the tree stops)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def wait(self, earliest: float, latest: float, clock: Clock) -> bool:
        """Block until due, but not before ``earliest`` nor after ``latest``; False once closed.

        Times are the tree's clock's; the waiting is done in real time.
        """
        with self._cond:
            while not self._closed:
                now = clock.monotonic()
                at = min(max(self._due, earliest), latest)
                if now >= at:
                    return True
                self._cond.wait(at - now)
            return False


class Ticker:
    """Sends ``Tick(clock.monotonic())`` to ``target`` when ``alarm`` is due.

    At most one tick every ``interval`` seconds, at least one every
    ``max(interval, QUIET_TICK)``. Its thread only waits and tells.
    """

    def __init__(
        self,
        target: pykka.ActorRef[Any],
        clock: Clock,
        interval: float,
        alarm: Alarm | None = None,
    ) -> None:
        self._target = target
        self._clock = clock
        self._interval = interval
        self._quiet = max(interval, QUIET_TICK)
        self.alarm = alarm if alarm is not None else Alarm()
        self.ticks = 0
        self._thread = threading.Thread(target=self._run, name="ws-supervisor-ticker", daemon=True)

    def start(self) -> Ticker:
        """Start the ticker thread."""
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop ticking and wait for the thread to end."""
        self.alarm.close()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        last = self._clock.monotonic()
        while self.alarm.wait(last + self._interval, last + self._quiet, self._clock):
            last = self._clock.monotonic()
            try:
                self._target.tell(Tick(last))
            except pykka.ActorDeadError:
                return
            self.ticks += 1


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
