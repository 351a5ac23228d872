"""A dispatched actor's inbox, and the ways to tell it something.

:class:`Mailbox` is the inbox of a :class:`~actors._runtime.dispatch.DispatchedActor`:
a deque, and the actor's place in its dispatcher's ready queue (see
:mod:`actors._runtime.dispatch` for the turns). :func:`stop_soon`,
:func:`tell_here` and :func:`stop_here` send to any pykka actor.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Callable
from typing import Any, Protocol

import pykka

from actors._runtime.pykka_fence import ActorStop, Envelope

__all__ = ["Mailbox", "Scheduler", "TurnTaker", "stop_here", "stop_soon", "tell_here"]


class TurnTaker(Protocol):
    """What a mailbox calls on its actor (a :class:`~actors._runtime.dispatch.DispatchedActor`)."""

    @property
    def actor_ref(self) -> pykka.ActorRef[Any]: ...

    actor_stopped: threading.Event

    def set_up(self) -> None: ...

    def handle_envelope(self, envelope: Envelope[Any]) -> None: ...

    def handle_told(self, message: Any) -> None: ...

    def handle_told_call(
        self, call: Callable[[Any, str, str], None], first: str, second: str
    ) -> None: ...

    @property
    def has_turn_end(self) -> bool: ...

    def end_turn(self) -> None: ...

    def on_ended(self) -> None: ...


class Scheduler(Protocol):
    """What a mailbox calls on its dispatcher (a :class:`~actors._runtime.dispatch.Dispatcher`)."""

    def submit(self, mailbox: Mailbox) -> None: ...

    def forget(self, mailbox: Mailbox) -> None: ...


_NEW, _IDLE, _SCHEDULED, _DEAD = "new", "idle", "scheduled", "dead"


def stop_soon(ref: pykka.ActorRef[Any]) -> None:
    """Ask ``ref``'s actor to stop, as ``ref.stop(block=False)`` without its two futures.

    Nothing to wait on and nothing raised: a dead actor is left alone.
    """
    tell_here(ref, ActorStop(), 0)


def tell_here(ref: pykka.ActorRef[Any], message: Any, batch: int = 1) -> bool:
    """Tell ``message``; if the actor is dispatched and asleep, give it the turn on this thread.

    For short messages between actors of one tree (a manager's detach or
    stop, from its supervisor's turn): the actor runs its turn now, on the
    calling thread, instead of waking a worker for it, and what it answers
    the caller waits in the caller's own inbox, for this same turn. An actor
    that is busy, or not a dispatched one, gets the message as with ``tell``.
    False if the actor is dead (nothing raised). Up to ``batch`` messages
    are handled in that turn: the first, then what came meanwhile (answers
    to it, say); raise it only for actors whose every message is short.
    With ``batch=0`` it is a plain ``tell``.
    """
    inbox = ref.actor_inbox
    if batch > 0 and isinstance(inbox, Mailbox) and inbox.run_here(message, batch):
        return True
    try:
        ref.tell(message)
    except pykka.ActorDeadError:
        return False
    return True


def stop_here(ref: pykka.ActorRef[Any]) -> None:
    """:func:`stop_soon`, with the actor's last turn on this thread if it is asleep."""
    tell_here(ref, ActorStop())


def _refuse(actor: str, envelope: Envelope[Any]) -> None:
    """Answer an envelope that will never be handled, as pykka's teardown does."""
    if envelope.reply_to is None:
        return
    if isinstance(envelope.message, ActorStop):
        envelope.reply_to.set(None)
    else:
        error = pykka.ActorDeadError(f"{actor} stopped before handling the message")
        envelope.reply_to.set_exception(exc_info=(pykka.ActorDeadError, error, None))


class Mailbox:
    """A dispatched actor's inbox: a deque, and the actor's place in the ready queue.

    ``put`` may be called from any thread; ``get`` and ``empty`` only from
    the actor's own turn (its hooks).
    """

    __slots__ = ("_actor", "_dispatcher", "_envelopes", "_lock", "_name", "_started", "_state")

    def __init__(self) -> None:
        self._envelopes: collections.deque[Envelope[Any]] = collections.deque()
        self._lock = threading.Lock()
        self._state = _NEW
        self._started = False
        self._actor: TurnTaker | None = None
        self._dispatcher: Scheduler | None = None
        self._name = ""

    def bind(self, actor: TurnTaker, dispatcher: Scheduler) -> None:
        """Tie the mailbox to its actor and dispatcher (from the actor's ``__init__``)."""
        self._actor, self._dispatcher = actor, dispatcher

    def put(self, envelope: Envelope[Any], /) -> None:
        """Any thread: queue one envelope; schedule the actor if it was asleep."""
        with self._lock:
            state = self._state
            if state is not _DEAD:
                self._envelopes.append(envelope)
                if state is _IDLE:
                    self._state = _SCHEDULED
        if state is _IDLE:
            assert self._dispatcher is not None
            self._dispatcher.submit(self)
        elif state is _DEAD:
            _refuse(self._name, envelope)

    def run_here(self, message: Any, batch: int = 1) -> bool:
        """Any thread: if the actor is asleep, handle the told ``message`` in a turn on this thread.

        False, and nothing done, if the actor is in a turn, waiting for one,
        not started or dead. The turn handles ``message``, then up to
        ``batch - 1`` envelopes that came meanwhile; what is left then goes
        to the dispatcher, as after any turn. An asleep actor has started
        and has nothing queued, so ``message`` is its next message in order.
        """
        with self._lock:
            if self._state is not _IDLE:
                return False
            self._state = _SCHEDULED  # ours: put() queues behind it and wakes nobody
        actor = self._actor
        assert actor is not None
        stopped = actor.actor_stopped
        if not stopped.is_set():
            actor.handle_told(message)
        envelopes = self._envelopes
        for _ in range(batch - 1):
            if not envelopes or stopped.is_set():
                break
            actor.handle_envelope(envelopes.popleft())
        self._end_turn(actor)
        return True

    def call_here(self, call: Callable[[Any, str, str], None], first: str, second: str) -> bool:
        """Any thread: if the actor is asleep, run ``call(actor, first, second)`` as its turn here.

        :meth:`run_here` for one message, without the message: no envelope,
        no dispatch by type (a connection's frame to its idle manager, whose
        handler runs inline). The turn is a turn like any other: its lock,
        its failure handling (as a told message's), ``on_turn_end``, and
        what came meanwhile goes to the dispatcher. False, and nothing done,
        if the actor is in a turn, waiting for one, not started or dead.
        """
        with self._lock:
            if self._state is not _IDLE:
                return False
            self._state = _SCHEDULED  # ours: put() queues behind it and wakes nobody
        actor = self._actor
        assert actor is not None
        if not actor.actor_stopped.is_set():
            actor.handle_told_call(call, first, second)
        self._end_turn(actor)
        return True

    @property
    def asleep(self) -> bool:
        """True while the actor waits for a message: a tell to it now runs here (tell_here)."""
        return self._state is _IDLE

    def get(self) -> Envelope[Any]:
        """The oldest envelope; never blocks (IndexError when empty)."""
        return self._envelopes.popleft()

    def empty(self) -> bool:
        """True when no envelope waits."""
        return not self._envelopes

    def arm(self) -> None:
        """Start: give the actor its first turn (``on_start``, then what is queued)."""
        with self._lock:
            self._state = _SCHEDULED
        assert self._dispatcher is not None
        self._dispatcher.submit(self)

    def run_turn(self, batch: int) -> None:
        """Worker: handle up to ``batch`` envelopes, then requeue, sleep or end."""
        actor = self._actor
        assert actor is not None and self._dispatcher is not None
        if not self._started:
            self._started = True
            actor.set_up()  # on_start; a failure stops the actor
        stopped = actor.actor_stopped
        envelopes = self._envelopes
        for _ in range(batch):
            if not envelopes or stopped.is_set():
                break
            actor.handle_envelope(envelopes.popleft())
        self._end_turn(actor)

    def _end_turn(self, actor: TurnTaker) -> None:
        """The end of a turn: the actor's hook, then requeue, sleep or end."""
        assert self._dispatcher is not None
        stopped, envelopes = actor.actor_stopped, self._envelopes
        if actor.has_turn_end and not stopped.is_set():
            actor.end_turn()
        with self._lock:
            if stopped.is_set():
                self._state = _DEAD
            elif envelopes:
                self._state = _SCHEDULED
            else:
                self._state = _IDLE
            state = self._state
        if state is _SCHEDULED:
            self._dispatcher.submit(self)
        elif state is _DEAD:
            self.end()

    def end(self) -> None:
        """Mark the actor dead, answer what is left, leave the dispatcher, let go of the actor.

        The actor and its mailbox refer to each other: once the actor has
        ended, the mailbox keeps only its name, so reference counting frees
        the actor (and what it held) instead of the cyclic collector.
        """
        actor = self._actor
        if actor is None:  # ended already (killed while its last turn ran)
            return
        assert self._dispatcher is not None
        self._name = str(actor.actor_ref)
        with self._lock:
            self._state = _DEAD
            left = list(self._envelopes)
            self._envelopes.clear()
            self._actor = None
        for envelope in left:
            _refuse(self._name, envelope)
        self._dispatcher.forget(self)
        actor.on_ended()

    def kill(self) -> None:
        """End an actor that did not stop in time: unregistered, stopped, asks failed."""
        actor = self._actor
        if actor is None:  # it ended meanwhile
            return
        pykka.ActorRegistry.unregister(actor.actor_ref)
        actor.actor_stopped.set()
        self.end()
