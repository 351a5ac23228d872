"""Every exception the engine raises on purpose.

The whole tree of ws-supervisor's exceptions (the product adds the branches
marked *supervisor*, in :mod:`supervisor.errors`)::

    WsSupervisorError                     base of everything below
    ├── InvalidIdError (ValueError)       a user, thread, run or request id that fails validation
    ├── AdmissionRefused                  a connection the quota or the node cap turns away
    ├── TreeNotRunning                    a call into a supervision tree that is stopped
    ├── DispatcherStopped (RuntimeError)  an actor started on a dispatcher that is not running
    ├── InjectedFault                     raised on purpose by the fault-injection messages
    ├── ConfigError         supervisor    bad settings, each with its key path
    ├── AuthError           supervisor    a WebSocket handshake that does not authenticate
    ├── FrameError          supervisor    a frame that cannot be handled (answered, not raised)
    ├── BackendUnavailable  supervisor    the admin listener cannot have an answer now (503)
    ├── ForcedExit          supervisor    a second SIGINT: the daemon stops without draining
    ├── HeadError           supervisor    a request head the master of serve --workers refuses
    ├── SubscribedError     supervisor    bytes a subscribed Redis connection should not send
    └── WorkerFailed        supervisor    a worker that would not start, or kept dying

Callers catch :class:`WsSupervisorError` to handle all of them; nothing else
in the code base derives from :class:`Exception` directly.
"""

from __future__ import annotations

__all__ = [
    "AdmissionRefused",
    "DispatcherStopped",
    "InjectedFault",
    "InvalidIdError",
    "TreeNotRunning",
    "WsSupervisorError",
]


class WsSupervisorError(Exception):
    """Base class of every error ws-supervisor raises on purpose."""


class InvalidIdError(WsSupervisorError, ValueError):
    """An id (user, thread, run, request) that is empty, too long or has bad characters."""

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"invalid {field}: {reason}")


class AdmissionRefused(WsSupervisorError):
    """A connection refused by the quota or the node-wide cap; ``reason`` says which."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        self.reason = reason
        self.retry_after = retry_after
        super().__init__(f"admission refused: {reason}")


class TreeNotRunning(WsSupervisorError):
    """A call into a supervision tree that has not started or has stopped."""


class DispatcherStopped(WsSupervisorError, RuntimeError):
    """An actor was started on a dispatcher that is not running."""


class InjectedFault(WsSupervisorError):
    """Raised on purpose by a fault-injection message, to exercise crash handling."""
