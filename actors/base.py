"""What every actor of the tree shares: daemon threads, dispatch by type, fault injection."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pykka

from actors.messages import Crash
from supervisor.errors import InjectedFault

__all__ = ["DispatchingActor"]

log = logging.getLogger(__name__)


class DispatchingActor(pykka.ThreadingActor):
    """An actor whose messages go to the handler registered for their type.

    Threads are daemon threads: pykka's non-daemon threads start ever slower
    as their number grows, and a stuck actor must never keep the process
    alive. :class:`~actors.messages.Crash` makes any of them fail on purpose.
    """

    use_daemon_thread = True

    def __init__(self) -> None:
        super().__init__()
        self._dispatch: dict[type[Any], Callable[[Any], Any]] = {}

    def on_receive(self, message: Any) -> Any:
        """Runs on the actor's own thread for every message."""
        if isinstance(message, Crash):
            raise InjectedFault(message.reason)
        handler = self._dispatch.get(type(message))
        if handler is None:
            log.warning("%s: unknown message %r", type(self).__name__, message)
            return None
        return handler(message)
