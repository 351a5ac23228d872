"""The engine: a supervision tree of pykka actors that owns every user's quota.

Nothing in this package imports asyncio, websockets or :mod:`supervisor`: an
actor reaches its connection only through a :class:`Port`, and whoever runs
the tree (the product in :mod:`supervisor`, or your own code) carries frames
and closes across the thread boundary.

The public API is the names below, imported from their modules on first
use. The modules:

- :mod:`actors.tree`: :class:`SupervisionTree`, the facade that starts, admits and stops.
- :mod:`actors.settings`: the engine's settings (quota, thresholds, restart, cleanup, pool,
  timeouts).
- :mod:`actors.context`: the one context per connection, and the isolation key.
- :mod:`actors.ports`: the port, the handler, the handle and the admission ticket.
- :mod:`actors.messages`: every message between the actors, as immutable types.
- :mod:`actors.policies`: the pure classes every decision is made by.
- :mod:`actors.root`, :mod:`actors.user`, :mod:`actors.manager`: the three actor kinds;
  :mod:`actors.ticker`: the one timer thread.
- :mod:`actors.errors`, :mod:`actors.codes`, :mod:`actors.clock`, :mod:`actors.observer`.
- ``actors._runtime`` (private): the dispatcher that runs the actors on a few threads, and
  the one module that touches pykka's private parts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from actors._lazy import lazy_exports

if TYPE_CHECKING:
    from actors.clock import Clock, ManualClock, SystemClock
    from actors.codes import ServerCloseCode
    from actors.context import UnifiedIdGenerator, UserExecutionContext, validate_id
    from actors.errors import (
        AdmissionRefused,
        DispatcherStopped,
        InjectedFault,
        InvalidIdError,
        TreeNotRunning,
        WsSupervisorError,
    )
    from actors.handle import ConnectionHandle
    from actors.observer import AdmissionResult, CleanupReason, NullObserver, Observer
    from actors.policies.ledger import InMemoryLedger, Ledger
    from actors.ports import (
        Admission,
        AdmissionTicket,
        Handle,
        Handler,
        ManagerStats,
        Port,
        QueuePort,
    )
    from actors.settings import Settings
    from actors.tree import SupervisionTree

_EXPORTS = {
    **dict.fromkeys(["Clock", "ManualClock", "SystemClock"], "actors.clock"),
    "ServerCloseCode": "actors.codes",
    **dict.fromkeys(
        ["UnifiedIdGenerator", "UserExecutionContext", "validate_id"], "actors.context"
    ),
    **dict.fromkeys(
        [
            "AdmissionRefused",
            "DispatcherStopped",
            "InjectedFault",
            "InvalidIdError",
            "TreeNotRunning",
            "WsSupervisorError",
        ],
        "actors.errors",
    ),
    "ConnectionHandle": "actors.handle",
    **dict.fromkeys(
        ["AdmissionResult", "CleanupReason", "NullObserver", "Observer"], "actors.observer"
    ),
    **dict.fromkeys(["InMemoryLedger", "Ledger"], "actors.policies.ledger"),
    **dict.fromkeys(
        ["Admission", "AdmissionTicket", "Handle", "Handler", "ManagerStats", "Port", "QueuePort"],
        "actors.ports",
    ),
    "Settings": "actors.settings",
    "SupervisionTree": "actors.tree",
}

__all__ = [
    "Admission",
    "AdmissionRefused",
    "AdmissionResult",
    "AdmissionTicket",
    "CleanupReason",
    "Clock",
    "ConnectionHandle",
    "DispatcherStopped",
    "Handle",
    "Handler",
    "InMemoryLedger",
    "InjectedFault",
    "InvalidIdError",
    "Ledger",
    "ManagerStats",
    "ManualClock",
    "NullObserver",
    "Observer",
    "Port",
    "QueuePort",
    "ServerCloseCode",
    "Settings",
    "SupervisionTree",
    "SystemClock",
    "TreeNotRunning",
    "UnifiedIdGenerator",
    "UserExecutionContext",
    "WsSupervisorError",
    "validate_id",
]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
