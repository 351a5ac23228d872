"""The supervision tree as one object: start it, admit connections, dump it, stop it.

This is the embedding API for plain threads. Its blocking calls
(:meth:`SupervisionTree.admit`, :meth:`SupervisionTree.snapshot`) must never
run on an asyncio event loop; the loop uses :meth:`SupervisionTree.admit_nowait`
with a callback that hops back with ``call_soon_threadsafe`` (or, when
the admission's turn runs on the loop itself, completes at once).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any

import attrs
import pykka

from actors._runtime.dispatch import Dispatcher
from actors._runtime.mailbox import tell_here
from actors.clock import Clock, SystemClock
from actors.context import UserExecutionContext, validate_id
from actors.errors import TreeNotRunning
from actors.messages import Admit, Crash, GetSnapshot, GetSupervisors, Push, TakeBack, Tick
from actors.observer import CleanupReason, NullObserver, Observer
from actors.policies.ledger import InMemoryLedger, Ledger
from actors.ports import Admission, AdmissionTicket, Handler, Port
from actors.root import RootMonitorActor
from actors.runtime import Runtime
from actors.settings import Settings
from actors.ticker import Alarm, Ticker, stop_and_wait

__all__ = ["DEFAULT_DISPATCHER_WORKERS", "SupervisionTree", "echo_handler"]


def echo_handler(context: UserExecutionContext, text: str, send: Callable[[str], None]) -> None:
    """The simplest application: send every frame back as it came."""
    send(text)


DEFAULT_DISPATCHER_WORKERS = 2
"""Worker threads that run every manager actor of a tree."""

SYSTEM_DISPATCHER_WORKERS = 1
"""Worker threads that run the root and the user supervisors of a tree."""

SHARED_LEDGER_SYSTEM_WORKERS = 2
"""The same with a shared ledger (Redis). Admissions and closes do not wait for
Redis, but a resume (a slot handed from one connection to the next) does, for
up to twice ``[redis] timeout``: a second worker keeps the other users going."""


class SupervisionTree:
    """A root monitor, its user supervisors and their managers, plus the ticker.

    No actor has a thread of its own: the managers run on the tree's
    :attr:`dispatcher` (``dispatcher_workers`` threads), the root and the
    user supervisors on its :attr:`system_dispatcher` (one thread); both are
    started by :meth:`start` and stopped, with every actor still on them, by
    :meth:`stop`.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        clock: Clock | None = None,
        observer: Observer | None = None,
        ledger: Ledger | None = None,
        handler_factory: Callable[[], Handler] = lambda: echo_handler,
        tick: bool = True,
        node_id: str = "",
        dispatcher_workers: int = DEFAULT_DISPATCHER_WORKERS,
    ) -> None:
        self.settings = settings
        self.node_id = node_id
        self.clock: Clock = clock or SystemClock()
        self.ledger: Ledger = ledger or InMemoryLedger(settings.quota.node_max_managers)
        self.dispatcher = Dispatcher(dispatcher_workers, name="ws-supervisor-managers")
        system_workers = (
            SHARED_LEDGER_SYSTEM_WORKERS if self.ledger.shared else SYSTEM_DISPATCHER_WORKERS
        )
        self.system_dispatcher = Dispatcher(system_workers, name="ws-supervisor-system")
        self._runtime = Runtime(
            settings,
            self.clock,
            self.ledger,
            observer or NullObserver(),
            handler_factory,
            dispatcher=self.dispatcher,
            system_dispatcher=self.system_dispatcher,
        )
        self._tick = tick
        self._root: pykka.ActorRef[Any] | None = None
        self._ticker: Ticker | None = None
        self._lock = threading.Lock()

    # --- lifecycle -------------------------------------------------------------------------

    def start(self) -> SupervisionTree:
        """Start the dispatcher, the root monitor and, unless disabled, the ticker."""
        with self._lock:
            if self._root is not None:
                return self
            self.dispatcher.start()
            self.system_dispatcher.start()
            alarm = Alarm()
            self._root = RootMonitorActor.start(self._runtime, alarm)
            if self._tick:
                interval = self.settings.timeouts.tick_interval
                self._ticker = Ticker(self._root, self.clock, interval, alarm).start()
        return self

    def stop(self, timeout: float | None = None) -> None:
        """Close every connection (1001), free every slot, stop every actor and thread.

        The root tells the supervisors to stop, and they their managers,
        without waiting; the waiting is done here, by each dispatcher, within
        ``timeout`` in all. An actor that has not stopped by then is ended
        and counted as abandoned.
        """
        with self._lock:
            root, self._root = self._root, None
            ticker, self._ticker = self._ticker, None
        if ticker is not None:
            ticker.stop()
        limit = timeout or self.settings.cleanup.emergency_cleanup_timeout * 2 + 1.0
        deadline = time.monotonic() + limit
        if root is not None:
            stop_and_wait([root], limit)
        late = self.system_dispatcher.stop(max(0.0, deadline - time.monotonic()))
        late += self.dispatcher.stop(max(0.0, deadline - time.monotonic()))
        for _ in range(late):
            self._runtime.observer.abandoned()

    def __enter__(self) -> SupervisionTree:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        """True between :meth:`start` and :meth:`stop`."""
        return self._root is not None and self._root.is_alive()

    def _root_ref(self) -> pykka.ActorRef[Any]:
        root = self._root
        if root is None or not root.is_alive():
            raise TreeNotRunning("the supervision tree is not running")
        return root

    # --- connections ---------------------------------------------------------------------------

    def admit_nowait(
        self,
        context: UserExecutionContext,
        port: Port,
        on_answer: Callable[[Admission], None] | None = None,
    ) -> AdmissionTicket:
        """Ask for a slot without blocking; the answer comes through the ticket.

        ``on_answer`` runs in the supervisor's turn and must only hand the
        answer over (``loop.call_soon_threadsafe``): on the supervisor's
        worker, or on the calling thread itself, before this returns, when
        the ledger is in memory and the root and the supervisor are idle.
        A caller that stops waiting calls ``ticket.withdraw()``; a late
        admission is then undone.
        """
        ticket = AdmissionTicket(on_answer)
        root, message = self._root_ref(), Admit(context, port, ticket)
        if not tell_here(root, message, self._runtime.root_turn):
            raise TreeNotRunning("the supervision tree is not running")
        return ticket

    def admit(self, context: UserExecutionContext, port: Port, timeout: float = 5.0) -> Admission:
        """Ask for a slot and wait for the answer (blocking: never on an event loop)."""
        ticket = self.admit_nowait(context, port)
        answer = ticket.wait(timeout)
        if answer is None and ticket.withdraw():
            return Admission("rejected_unavailable", reason="no answer in time")
        answer = answer or ticket.wait(0)
        assert answer is not None
        return answer

    def push_nowait(
        self,
        user_id: str,
        thread_id: str | None,
        text: str,
        reply: Callable[[int], None],
        *,
        here: bool = False,
    ) -> None:
        """Deliver ``text`` to a thread's connection, or all the user's; ``reply(count)``.

        ``reply`` runs on an actor thread. Ids are validated first, so a bad
        one raises :class:`~actors.errors.InvalidIdError` here. ``here``: if
        the root is asleep, its turn (and the idle supervisor's and managers'
        turns it leads to) runs on the calling thread, not on a woken worker:
        for a thread that is not an actor's (the cluster listener's, or the
        event loop that reads the node's channel, handing on a push from
        another node); ``reply`` may then run on it too.
        """
        validate_id("user_id", user_id)
        if thread_id is not None:
            validate_id("thread_id", thread_id)
        message = Push(user_id, thread_id, text, reply)
        if here:
            if not tell_here(self._root_ref(), message):
                raise TreeNotRunning("the supervision tree is not running")
        else:
            self._root_ref().tell(message)

    def push(self, user_id: str, thread_id: str | None, text: str, timeout: float = 2.0) -> int:
        """Deliver and wait for the count (blocking: never on an event loop)."""
        done: queue.SimpleQueue[int] = queue.SimpleQueue()
        self.push_nowait(user_id, thread_id, text, done.put)
        try:
            return done.get(timeout=timeout)
        except queue.Empty:
            return 0

    def take_back(
        self, user_id: str, websocket_id: str, reason: CleanupReason, why: str = ""
    ) -> None:
        """Close a connection whose slot a shared ledger gave away (4001 or 4002).

        Never blocks; an unknown user or connection is ignored.
        """
        self._root_ref().tell(TakeBack(user_id, websocket_id, reason, why))

    def tick(self, now: float | None = None) -> None:
        """Send one tick by hand (for trees started with ``tick=False``)."""
        self._root_ref().tell(Tick(self.clock.monotonic() if now is None else now))

    def reconfigure(self, settings: Settings) -> None:
        """Apply new quota, thresholds and timeouts to the running tree."""
        runtime = attrs.evolve(self._runtime, settings=settings)
        self.settings, self._runtime = settings, runtime
        self._root_ref().tell(runtime)

    def crash_user_supervisor(self, user_id: str, timeout: float = 2.0) -> bool:
        """Fault injection: make the user's supervisor crash; False if it has none."""
        ref = self.supervisors(timeout).get(user_id)
        if ref is None:
            return False
        ref.tell(Crash("crash_user_supervisor"))
        return True

    def supervisors(self, timeout: float = 2.0) -> dict[str, pykka.ActorRef[Any]]:
        """The live user supervisors by user id (blocking)."""
        found: dict[str, pykka.ActorRef[Any]] = self._root_ref().ask(
            GetSupervisors(), block=True, timeout=timeout
        )
        return found

    # --- state -----------------------------------------------------------------------------------

    @property
    def ticks(self) -> int:
        """Ticks the ticker has sent so far (0 without a ticker)."""
        ticker = self._ticker
        return 0 if ticker is None else ticker.ticks

    def snapshot(self, timeout: float = 2.0) -> dict[str, Any]:
        """The whole tree as JSON-ready data: ``{"root": {...}, "users": [...]}`` (blocking)."""
        deadline = time.monotonic() + timeout
        root = self._root_ref()
        sups = self.supervisors(timeout)
        root_state: dict[str, Any] = root.ask(GetSnapshot(), block=True, timeout=timeout)
        futures = {user: ref.ask(GetSnapshot(), block=False) for user, ref in sups.items()}
        levels: dict[str, str] = root_state.pop("user_levels")
        users = []
        for user_id, future in sorted(futures.items()):
            try:
                state: dict[str, Any] = future.get(timeout=max(0.0, deadline - time.monotonic()))
            except (pykka.Timeout, pykka.ActorDeadError):
                state = {"user_id": user_id, "error": "no answer in time", "managers": []}
            state["level"] = levels.get(user_id, "ok")
            state["cluster_used"] = self.ledger.usage(user_id)
            users.append(state)
        root_state["node_id"] = self.node_id
        root_state["threads"] = threading.active_count()
        root_state["slots_held"] = self.ledger.total()
        root_state["ledger"] = self.settings.quota.backend
        root_state["now"] = round(self.clock.wall(), 3)  # what the epoch times are read against
        return {"root": root_state, "users": users}
