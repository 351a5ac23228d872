"""Apps that misbehave on purpose: they crash or hang on command."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from actors.context import UserExecutionContext

__all__ = ["RELEASE", "FaultyApp"]

RELEASE = threading.Event()
"""Set to let every hanging handler return (tests set it at the end)."""


class FaultyApp:
    """Echo, but ``{"type": "crash"}`` raises and ``{"type": "hang"}`` blocks."""

    types = frozenset({"echo", "crash", "hang"})

    def on_message(
        self,
        context: UserExecutionContext,
        message: dict[str, Any],
        send: Callable[[dict[str, Any]], None],
    ) -> None:
        if message["type"] == "crash":
            raise RuntimeError("crash requested by the client")
        if message["type"] == "hang":
            RELEASE.wait(60)
            return
        send({"type": "echo", "data": message.get("data")})
