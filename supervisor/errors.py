"""Every exception ws-supervisor raises on purpose.

The tree::

    WsSupervisorError                  base of everything below
    ├── ConfigError                    one or more bad settings, each with its key path
    ├── InvalidIdError (ValueError)    a user, thread, run or request id that fails validation
    ├── AdmissionRefused               a connection that the quota or the node cap turns away
    ├── TreeNotRunning                 a call into a supervision tree that is stopped
    ├── InjectedFault                  raised on purpose by the fault-injection messages
    └── AuthError                      a WebSocket handshake that does not authenticate

Callers catch :class:`WsSupervisorError` to handle all of them; nothing else
in the code base derives from :class:`Exception` directly.
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs

__all__ = [
    "AdmissionRefused",
    "AuthError",
    "ConfigError",
    "ConfigIssue",
    "InjectedFault",
    "InvalidIdError",
    "TreeNotRunning",
    "WsSupervisorError",
]


class WsSupervisorError(Exception):
    """Base class of every error ws-supervisor raises on purpose."""


@attrs.frozen
class ConfigIssue:
    """One problem in a configuration: where it is and what is wrong.

    ``path`` is the dotted key path (``quota.max_managers_per_user``), with the
    environment variable in brackets when the value came from one.
    """

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class ConfigError(WsSupervisorError):
    """A configuration that cannot be used; ``issues`` lists every problem found."""

    def __init__(self, issues: Sequence[ConfigIssue], source: str = "config") -> None:
        self.issues = tuple(issues)
        self.source = source
        lines = "\n".join(f"  {issue}" for issue in self.issues)
        super().__init__(f"{source}: {len(self.issues)} problem(s)\n{lines}")


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


class InjectedFault(WsSupervisorError):
    """Raised on purpose by a fault-injection message, to exercise crash handling."""


class AuthError(WsSupervisorError):
    """A WebSocket handshake that does not authenticate.

    ``reason`` is short, never echoes the token and is what the server sends
    in the 401 response body.
    """

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"authentication failed: {reason}")
