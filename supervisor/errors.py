"""The exceptions of the product: configuration, authentication, frames, the process.

They derive from :class:`actors.errors.WsSupervisorError`, whose module
docstring draws the whole tree.
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs

from actors.errors import WsSupervisorError

__all__ = [
    "AuthError",
    "BackendUnavailable",
    "ConfigError",
    "ConfigIssue",
    "ForcedExit",
    "FrameError",
    "HeadError",
    "SubscribedError",
    "WorkerFailed",
]


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


class AuthError(WsSupervisorError):
    """A WebSocket handshake that does not authenticate.

    ``reason`` is short, never echoes the token and is what the server sends
    in the 401 response body.
    """

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"authentication failed: {reason}")


@attrs.frozen
class FrameError(WsSupervisorError):
    """A frame that cannot be handled; ``code`` is machine-readable.

    The front answers it with an ``error`` frame; it never ends the connection.
    """

    code: str
    message: str

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class BackendUnavailable(WsSupervisorError):
    """The admin listener's backend cannot answer now (the tree is stopped or too slow): 503."""


class ForcedExit(WsSupervisorError):
    """A second SIGINT: stop now, without waiting for the drain."""


class HeadError(WsSupervisorError):
    """A request head the master of ``serve --workers`` refuses: ``status`` and ``reason``."""

    def __init__(self, status: int, reason: str) -> None:
        self.status = status
        self.reason = reason
        super().__init__(f"{status}: {reason}")


class SubscribedError(WsSupervisorError):
    """Bytes a subscribed Redis connection should not send (an error reply, or no pub/sub reply)."""


class WorkerFailed(WsSupervisorError):
    """A worker of ``serve --workers`` that would not start, or kept dying: the daemon stops."""
