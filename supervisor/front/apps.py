"""Applications: the built-in echo, and loading one by import path (``module:Name``)."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from actors.context import UserExecutionContext
from actors.ports import Handler
from supervisor.errors import ConfigError, ConfigIssue
from supervisor.front.protocol import App, JsonProtocol

__all__ = ["EchoApp", "WorkerEchoApp", "load_app"]


class EchoApp:
    """Answers ``{"type": "echo", "data": X}`` with the same frame; never blocks."""

    types = frozenset({"echo"})
    runs_inline = True

    def on_message(
        self,
        context: UserExecutionContext,
        message: dict[str, Any],
        send: Callable[[dict[str, Any]], None],
    ) -> None:
        send({"type": "echo", "data": message.get("data")})


class WorkerEchoApp(EchoApp):
    """:class:`EchoApp` on the managers' workers, as an app that may block runs (to compare)."""

    runs_inline = False


def load_app(path: str) -> Callable[[], Handler]:
    """A handler factory for the app at ``package.module:Name`` (a class or a factory).

    Raises :class:`ConfigError` at ``server.app`` if it cannot be imported or
    does not make an :class:`~supervisor.front.protocol.App`.
    """
    module_name, _, attribute = path.partition(":")
    try:
        factory: Callable[[], App] = getattr(importlib.import_module(module_name), attribute)
        sample = factory()
    except Exception as error:  # any import-time failure is a config problem
        raise ConfigError([ConfigIssue("server.app", f"cannot load {path!r}: {error}")]) from None
    if not isinstance(getattr(sample, "types", None), frozenset) or not callable(
        getattr(sample, "on_message", None)
    ):
        issue = ConfigIssue("server.app", f"{path!r} does not make an App (types, on_message)")
        raise ConfigError([issue])
    return lambda: JsonProtocol(factory())
