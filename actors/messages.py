"""Every message of the supervision tree, as immutable types.

Each message says who sends it and who receives it. Messages are only ever
sent with ``tell``; the few ``ask`` messages (named ``Get…``) are asked from
outside the actor world (the shell or a test), never by one actor of another.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs
import pykka

from actors.context import UserExecutionContext
from actors.observer import CleanupReason
from actors.policies.ledger import PendingAcquire
from actors.ports import AdmissionTicket, Handler, ManagerStats, Port

__all__ = [
    "AcquireAnswered",
    "Admit",
    "Attach",
    "ChildFailed",
    "ChildStopped",
    "Cleanup",
    "ConnectionClosed",
    "Crash",
    "Detach",
    "GetSnapshot",
    "GetSupervisors",
    "Inbound",
    "ManagerIdle",
    "Orphan",
    "Outbound",
    "PeerGone",
    "Push",
    "ReapConnection",
    "Shed",
    "SupervisorFailed",
    "TakeBack",
    "Tick",
    "UsageReport",
]

# --- shell -> root -> user supervisor ---------------------------------------


@attrs.frozen
class Admit:
    """Ask for a slot for a new connection; answered once through ``ticket``.

    Shell to root; the root forwards it to the user's supervisor.
    """

    context: UserExecutionContext
    port: Port
    ticket: AdmissionTicket


@attrs.frozen
class AcquireAnswered:
    """A shared ledger has the answer to the supervisor's pending admission.

    Sent from the ledger's I/O thread to the user supervisor that asked; the
    supervisor takes the result with ``Ledger.end_acquire(pending)``.
    """

    pending: PendingAcquire


@attrs.frozen
class Push:
    """Deliver ``text`` to the user's connection on ``thread_id``, or to all of them.

    Shell to root to the user's supervisor; ``reply`` is called once, on an
    actor thread, with the number of connections it was handed to.
    """

    user_id: str
    thread_id: str | None
    text: str
    reply: Callable[[int], None]


@attrs.frozen
class Tick:
    """The time is ``now`` (monotonic): check every timer.

    Ticker to root; root to the supervisors whose ``wake_at`` has come.
    """

    now: float


@attrs.frozen
class GetSnapshot:
    """Ask: the receiver's state as plain JSON-ready data (root or user supervisor)."""


@attrs.frozen
class GetSupervisors:
    """Ask the root: a dict of user id to the user supervisor's ref."""


# --- shell -> user supervisor (through a ConnectionHandle) --------------------


@attrs.frozen
class ConnectionClosed:
    """The connection ``websocket_id`` has closed; free its slot now.

    ``detected_at`` is the monotonic time the shell saw the close, for the
    release-latency histogram; ``code`` the close code, if known.
    """

    websocket_id: str
    detected_at: float
    code: int | None = None


@attrs.frozen
class PeerGone:
    """The peer of ``websocket_id`` went without a close frame; free its slot now.

    Only the slot: a :class:`ConnectionClosed` for the same connection
    follows, once the shell has read the other losses waiting, and does
    the rest (the manager retired, the usage reported).
    In a mass disconnect every slot is then free before the heavier half of
    any close is done. ``detected_at`` as for :class:`ConnectionClosed`.
    """

    websocket_id: str
    detected_at: float


@attrs.frozen
class ReapConnection:
    """Close ``websocket_id`` for ``reason`` (4003 for a timeout) and free its slot.

    Root to user supervisor (from a :class:`TakeBack`), or the supervisor's own.
    ``why`` is the close frame's reason text; empty means ``reason``.
    """

    websocket_id: str
    reason: CleanupReason = "timeout"
    why: str = ""


@attrs.frozen
class TakeBack:
    """Shell to root: a shared ledger has taken ``websocket_id``'s slot away; close it.

    Sent by the cluster link when another node superseded or evicted the
    connection, or its lease was lost. An unknown user or websocket id is
    ignored (the connection may have closed meanwhile).
    """

    user_id: str
    websocket_id: str
    reason: CleanupReason
    why: str = ""


# --- shell -> manager (through a ConnectionHandle) ----------------------------


@attrs.frozen
class Inbound:
    """One text frame from the client of ``websocket_id``."""

    websocket_id: str
    text: str


@attrs.frozen
class Outbound:
    """One text frame for the client of ``websocket_id``. Supervisor to manager."""

    websocket_id: str
    text: str


# --- user supervisor <-> manager ---------------------------------------------


@attrs.frozen
class Attach:
    """Serve this connection from now on. Supervisor to manager."""

    context: UserExecutionContext
    port: Port
    stats: ManagerStats
    handler: Handler


@attrs.frozen
class Detach:
    """The connection is gone: forget it and report whether you can be reused."""


@attrs.frozen
class ManagerIdle:
    """Manager to supervisor, after :class:`Detach`: detached, and reusable or not."""

    actor_urn: str
    reusable: bool


@attrs.frozen
class ChildFailed:
    """Manager to supervisor, from ``on_failure``: I crashed while serving ``websocket_id``.

    ``pending`` holds the frames still in its inbox, oldest first, so that a
    restart loses only the frame that crashed it.
    """

    websocket_id: str
    actor_urn: str
    error: str
    pending: tuple[Inbound | Outbound, ...] = ()


@attrs.frozen
class ChildStopped:
    """Manager to supervisor, from ``on_stop``: my thread is ending."""

    actor_urn: str


# --- root <-> user supervisor -------------------------------------------------


@attrs.frozen
class UsageReport:
    """Supervisor to root after every change: ``used`` of ``limit`` slots.

    ``admits_seen`` counts the admissions the supervisor has handled, so the
    root never stops a supervisor that still has an admission on its way.
    ``wake_at`` is the earliest tick time at which the supervisor has work
    (a sweep, an overdue close or stop, a pooled manager to expire): the
    root ticks it only from then on (``-inf``: at every tick).
    """

    user_id: str
    used: int
    limit: int
    pool_idle: int
    admits_seen: int
    wake_at: float = float("-inf")

    @property
    def counts(self) -> tuple[int, int, int, int]:
        """Everything but ``wake_at``: what the root's levels and totals depend on."""
        return (self.used, self.limit, self.pool_idle, self.admits_seen)


@attrs.frozen
class Cleanup:
    """Root to supervisor: reap every connection that is no longer live.

    ``trigger`` is ``emergency`` (a critical level) or ``timeout`` (the
    background sweep). ``started_at`` is the root's monotonic time when it
    decided an emergency cleanup (None: when the supervisor handles it).
    """

    trigger: CleanupReason
    started_at: float | None = None


@attrs.frozen
class Shed:
    """Root to supervisor: close the longest-idle connections until ``keep`` remain.

    Part of an emergency cleanup; ``started_at`` as for :class:`Cleanup`.
    """

    keep: int
    min_idle: float
    started_at: float | None = None


@attrs.frozen
class Orphan:
    """A connection left behind by a crashed supervisor."""

    context: UserExecutionContext
    port: Port | None
    manager: pykka.ActorRef[Any] | None
    holds_slot: bool


@attrs.frozen
class SupervisorFailed:
    """Supervisor to root, from ``on_failure``: I crashed; here is what I held."""

    user_id: str
    actor_urn: str
    orphans: tuple[Orphan, ...]
    idle_managers: tuple[pykka.ActorRef[Any], ...]


# --- fault injection -----------------------------------------------------------


@attrs.frozen
class Crash:
    """Any actor: raise :class:`actors.errors.InjectedFault` (for fault tests)."""

    reason: str = "injected"
