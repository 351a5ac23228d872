"""Apps that answer ``{"type": "where"}`` with the name of the thread that handled the frame."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from actors.context import UserExecutionContext
from tests.apps.faulty import FaultyApp

__all__ = ["InlineFaultyApp", "InlineWhereApp", "WorkerWhereApp"]


class WorkerWhereApp:
    """Answers with the handling thread's name; may block, so it runs on a manager worker."""

    types = frozenset({"where"})

    def on_message(
        self,
        context: UserExecutionContext,
        message: dict[str, Any],
        send: Callable[[dict[str, Any]], None],
    ) -> None:
        send({"type": "where", "thread": threading.current_thread().name})


class InlineWhereApp(WorkerWhereApp):
    """The same, promising never to block: its frames may be handled where they arrive."""

    runs_inline = True


class InlineFaultyApp(FaultyApp):
    """:class:`FaultyApp` that claims to run inline (its crash is what is tested, not a hang)."""

    runs_inline = True
