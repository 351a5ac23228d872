"""What the tree's own actors share: a dispatcher, dispatch by type, fault injection."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from actors._runtime.dispatch import DispatchedActor, Dispatcher
from actors.errors import InjectedFault
from actors.messages import Crash

__all__ = ["RoutingActor"]

log = logging.getLogger(__name__)


class RoutingActor(DispatchedActor):
    """An actor whose messages go to the handler registered for their type.

    It runs on ``dispatcher`` (the tree's system dispatcher), never on a
    thread of its own; :class:`~actors.messages.Crash` makes any of them
    fail on purpose.
    """

    def __init__(self, dispatcher: Dispatcher) -> None:
        super().__init__(dispatcher)
        self._dispatch: dict[type[Any], Callable[[Any], Any]] = {}

    def on_ended(self) -> None:
        """Drop the dispatch table: its bound methods refer back to this actor."""
        self._dispatch = {}

    def receive(self, message: Any) -> Any:
        """A message of a registered type goes straight to its handler.

        pykka's own checks (stop, proxy calls) come first otherwise: none of
        them is a registered type, so their order is kept for those. Runs on
        the thread of the actor's turn.
        """
        handler = self._dispatch.get(type(message))
        if handler is not None:
            return handler(message)
        return super().receive(message)

    def on_receive(self, message: Any) -> Any:
        """Runs on a dispatcher worker for every message."""
        if isinstance(message, Crash):
            raise InjectedFault(message.reason)
        handler = self._dispatch.get(type(message))
        if handler is None:
            log.warning("%s: unknown message %r", type(self).__name__, message)
            return None
        return handler(message)
