"""Dispatcher-backed pykka actors: many actors on a few shared threads.

A :class:`pykka.ThreadingActor` owns an OS thread for its whole life. A
:class:`DispatchedActor` does not: its inbox is a :class:`Mailbox` that, when
a message arrives, puts the actor on its :class:`Dispatcher`'s ready queue,
and one of the dispatcher's few daemon worker threads gives it a *turn*: up
to ``batch`` envelopes, handled one by one exactly as pykka 4.5's own actor
loop handles them (:class:`~actors._runtime.pykka_fence.FencedActor`), after
which the actor goes back
to the end of the ready queue if more messages are waiting (fairness), or to
sleep. An actor is scheduled at most once at a time, so two workers never run
the same actor: its hooks run one at a time, in order, as on its own thread.

pykka's semantics are kept: ``ActorRef.tell``, ``ask``, ``proxy`` and
``stop`` work unchanged, futures are :class:`pykka.ThreadingFuture`, the
actor is in the :class:`pykka.ActorRegistry` from ``start()`` until it
stops, an exception in ``on_receive`` from a ``tell`` is logged, calls
``on_failure`` and the actor stops, one from an
``ask`` goes back to the caller and the actor lives on, and the messages
still queued when it stops are answered with :class:`pykka.ActorDeadError`.
What differs:

- ``__init__`` runs on the thread that calls ``start()``; ``on_start``,
  ``on_receive``, ``on_failure`` and ``on_stop`` run on a dispatcher worker
  thread, any of them, one at a time (two turns of one actor may run on two
  different workers, never at once);
- a message given with :func:`tell_here` to an actor that sleeps is
  handled in a turn on the sender's thread, at once: no worker is woken,
  and what the actor sends back waits in the sender's inbox for the
  sender's same turn (for short messages between actors of one tree);
- ``actor_inbox.get()`` never blocks: call it only after ``empty()`` is
  False (``on_failure`` may drain what is left this way);
- a message sent after the actor has stopped is answered with
  ``ActorDeadError`` at once rather than left in the inbox;
- a new hook, ``on_turn_end``, runs after each turn (for one report per
  batch of messages rather than one per message);
- a hook must not block for long: a worker blocked in one actor serves no
  other actor; a BaseException in a hook stops every actor without waiting
  (``ActorRegistry.stop_all(block=False)``), since a worker must not wait on
  actors that need a worker to stop.

The dispatcher has an explicit lifecycle: :meth:`Dispatcher.start` starts
the workers, :meth:`Dispatcher.stop` asks every actor still on it to stop,
waits for them (bounded), ends the ones that did not (unregistered, marked
stopped, pending asks failed; their ``on_stop`` does not run), and joins
the workers. No thread is left behind.
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
import time
from typing import Any, ClassVar

import pykka

from actors._runtime.mailbox import Mailbox, stop_here, stop_soon, tell_here
from actors._runtime.pykka_fence import FencedActor, RefIndexScope
from actors.errors import DispatcherStopped

__all__ = [
    "DispatchedActor",
    "Dispatcher",
    "Mailbox",
    "stop_here",
    "stop_soon",
    "tell_here",
]

log = logging.getLogger(__name__)

_dispatcher_numbers = itertools.count(1)


class Dispatcher:
    """A small pool of daemon worker threads that gives dispatched actors their turns.

    ``workers`` threads take ready actors off one FIFO queue; each turn
    handles at most ``batch`` envelopes, so a busy actor cannot starve the
    others. :meth:`start` and :meth:`stop` may be called again (a stopped
    dispatcher can be restarted).
    """

    def __init__(self, workers: int = 2, batch: int = 32, name: str = "") -> None:
        if workers < 1 or batch < 1:
            raise ValueError(f"workers and batch must be >= 1, got {workers}, {batch}")
        self.workers = workers
        self.batch = batch
        self.name = name or f"ws-supervisor-dispatch-{next(_dispatcher_numbers)}"
        self._ready: queue.SimpleQueue[Mailbox | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._mailboxes: set[Mailbox] = set()
        self._lock = threading.Condition()
        self._running = False

    @property
    def running(self) -> bool:
        """True between :meth:`start` and :meth:`stop`."""
        return self._running

    @property
    def actors(self) -> int:
        """Actors started on this dispatcher and not yet ended."""
        with self._lock:
            return len(self._mailboxes)

    def start(self) -> Dispatcher:
        """Start the worker threads (idempotent)."""
        with self._lock:
            if self._running:
                return self
            self._running = True
            RefIndexScope.hold()  # O(1) unregister while dispatched actors come and go
            self._ready = queue.SimpleQueue()
            self._threads = [
                threading.Thread(target=self._work, name=f"{self.name}-{n}", daemon=True)
                for n in range(self.workers)
            ]
        for thread in self._threads:
            thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> int:
        """Stop every actor still here, then the workers; how many had to be killed.

        Waits up to ``timeout`` seconds in all: first for the actors to stop
        (their ``on_stop`` runs), then for the workers to end.
        """
        deadline = time.monotonic() + timeout
        with self._lock:
            if not self._running:
                return 0
            left = list(self._mailboxes)
        for mailbox in left:
            actor = mailbox._actor
            if actor is not None:  # else it ended since: only forget() is left for it
                stop_soon(actor.actor_ref)
        with self._lock:
            self._lock.wait_for(lambda: not self._mailboxes, max(0.0, deadline - time.monotonic()))
            self._running = False
            stuck = list(self._mailboxes)
        RefIndexScope.release()
        for mailbox in stuck:
            log.warning("%s: actor %s did not stop in time", self.name, mailbox._actor)
            mailbox.kill()
        for _ in self._threads:
            self._ready.put(None)
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(max(0.0, deadline - time.monotonic()))
        return len(stuck)

    def adopt(self, mailbox: Mailbox) -> None:
        """An actor is starting here; refused (DispatcherStopped) when not running."""
        with self._lock:
            if not self._running:
                raise DispatcherStopped(f"{self.name} is not running")
            self._mailboxes.add(mailbox)

    def forget(self, mailbox: Mailbox) -> None:
        """An actor has ended."""
        with self._lock:
            self._mailboxes.discard(mailbox)
            if not self._mailboxes:
                self._lock.notify_all()

    def submit(self, mailbox: Mailbox) -> None:
        """Queue one turn of ``mailbox``'s actor."""
        self._ready.put(mailbox)

    def _work(self) -> None:
        ready, batch = self._ready, self.batch
        while True:
            mailbox = ready.get()
            if mailbox is None:
                return
            try:
                mailbox.run_turn(batch)
            except BaseException:  # a bug here must not kill the worker
                log.exception("%s: a turn failed", self.name)


class DispatchedActor(FencedActor):
    """A pykka actor that runs on a :class:`Dispatcher`'s workers, not its own thread.

    Subclasses call ``super().__init__(dispatcher)``; everything else is
    pykka's (see the module docstring for which thread runs which hook).
    """

    actor_inbox: Mailbox
    use_daemon_thread: ClassVar[bool] = True  # as ThreadingActor's flag: workers are daemons
    has_turn_end: ClassVar[bool] = False
    """True if the class has an ``on_turn_end`` of its own: the mailbox calls it after a turn."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.has_turn_end = cls.on_turn_end is not DispatchedActor.on_turn_end

    def __init__(self, dispatcher: Dispatcher) -> None:
        super().__init__()
        self._dispatcher = dispatcher
        self.actor_inbox.bind(self, dispatcher)

    def make_inbox(self) -> Mailbox:
        """A :class:`Mailbox`, bound to the dispatcher once ``__init__`` has it."""
        return Mailbox()

    def start_turns(self) -> None:
        """Join the dispatcher and get the first turn; DispatcherStopped if it is not running."""
        try:
            self._dispatcher.adopt(self.actor_inbox)
        except DispatcherStopped:
            pykka.ActorRegistry.unregister(self.actor_ref)
            self.actor_stopped.set()
            raise
        self.actor_inbox.arm()

    def on_ended(self) -> None:
        """Runs once the actor has ended (after ``on_stop`` or ``on_failure``).

        On the worker of its last turn, or, for an actor that did not stop in
        time, on the thread that stops the dispatcher.

        Empty here; an actor drops there what ties it into a reference cycle
        (a table of its own bound methods, say), so that it is freed at once.
        """

    def on_turn_end(self) -> None:
        """Runs on the worker after each turn (a batch of messages) while the actor lives.

        Empty here; an actor may send there what it would otherwise send
        after every message (a summary, a report). An exception in it is
        handled as one in ``on_receive`` from a ``tell``.
        """

    def end_turn(self) -> None:
        """The mailbox's call after each turn: :meth:`on_turn_end`, its failure handled."""
        try:
            self.on_turn_end()
        except Exception:
            self.handle_told_failure()
