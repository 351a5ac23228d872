"""An app slower than its client: frames wait in its manager's inbox."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from actors.context import UserExecutionContext

__all__ = ["SlowEchoApp"]


class SlowEchoApp:
    """Answers ``echo`` with the size of its data, after half a second (on a worker)."""

    types = frozenset({"echo"})
    runs_inline = False

    def on_message(
        self,
        context: UserExecutionContext,
        message: dict[str, Any],
        send: Callable[[dict[str, Any]], None],
    ) -> None:
        time.sleep(0.5)
        send({"type": "echo", "data": len(str(message.get("data")))})
