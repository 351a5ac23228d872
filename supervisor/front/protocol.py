"""The JSON frame protocol, pure: parse a frame, answer ping, name every error.

Runs on a manager's dispatcher worker (inside :class:`JsonProtocol`); no I/O here.
Every frame is a JSON object with a string ``type``. ``ping`` is answered
with ``pong``; a frame that is not valid gets an ``error`` frame and the
connection stays open; everything else goes to the application.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Protocol

from actors.context import UserExecutionContext
from supervisor.errors import FrameError

__all__ = [
    "BINARY_ERROR",
    "MAX_DEPTH",
    "App",
    "JsonProtocol",
    "error_frame",
    "nesting_depth",
    "parse_frame",
    "welcome_frame",
]

MAX_DEPTH = 32
"""Deepest nesting of arrays and objects accepted in a frame."""


class App(Protocol):
    """An application behind ws-supervisor, one instance per connection.

    ``types`` are the frame types it accepts; ``on_message`` runs on a
    dispatcher worker (one at a time per connection) and answers through
    ``send``; it must not block for long. An exception it raises is
    a crash of the manager and follows the restart rules.

    An app whose class sets ``runs_inline = True`` promises that
    ``on_message`` never blocks and returns quickly (no I/O, no lock held
    long). Its frames are then handled on the thread that receives them,
    the event loop, whenever the connection's manager is idle: no thread
    hand-off on the way in or out. A manager that is busy gets the frame on
    its worker as usual. An app that may block must leave it unset.
    """

    types: frozenset[str]

    def on_message(
        self,
        context: UserExecutionContext,
        message: dict[str, Any],
        send: Callable[[dict[str, Any]], None],
    ) -> None: ...


def nesting_depth(value: Any) -> int:
    """How deep arrays and objects nest in ``value`` (0 for a scalar), measured without recursion.

    Level by level: what it holds at once is one level's containers (a
    pointer each), so measuring costs a fraction of what parsing did.
    """
    depth = 0
    level = [value] if isinstance(value, dict | list) else []
    while level:
        depth += 1
        below: list[Any] = []
        for item in level:
            children = item.values() if isinstance(item, dict) else item
            below.extend(child for child in children if isinstance(child, dict | list))
        level = below
    return depth


def parse_frame(text: str) -> dict[str, Any]:
    """The frame as a dict with a str ``type``; raise :class:`FrameError` otherwise.

    A value nests no deeper than the brackets its text opens, so the walk
    that measures the depth runs only for a text with more than
    :data:`MAX_DEPTH` of them.
    """
    try:
        value = json.loads(text)
    except (ValueError, RecursionError) as error:
        raise FrameError("invalid_json", f"not valid JSON: {str(error)[:80]}") from None
    if not isinstance(value, dict):
        raise FrameError("not_an_object", "a frame must be a JSON object")
    if not isinstance(value.get("type"), str):
        raise FrameError("missing_type", "a frame needs a string 'type'")
    if text.count("{") + text.count("[") > MAX_DEPTH and nesting_depth(value) > MAX_DEPTH:
        raise FrameError("too_deep", f"nesting deeper than {MAX_DEPTH} levels")
    return value


def error_frame(code: str, message: str) -> str:
    """An ``error`` frame."""
    return json.dumps({"type": "error", "code": code, "message": message})


_PONG = json.dumps({"type": "pong"})

BINARY_ERROR = error_frame(
    "binary_not_supported", "frames are JSON text; binary frames are not accepted"
)
"""The answer to a binary frame (the connection stays open)."""


_WELCOME = (
    '{"type": "welcome", "user_id": "%s", "thread_id": "%s", "run_id": "%s", '
    '"request_id": "%s", "websocket_id": "%s"}'
)


def welcome_frame(context: UserExecutionContext) -> str:
    """The first frame a client receives: who it is, under which ids.

    The text ``json.dumps`` makes of them, without its encoder: every id
    was validated when the context was built (ASCII letters, digits and
    ``. _ - @ + |``), and none of those needs escaping in JSON.
    """
    return _WELCOME % (
        context.user_id,
        context.thread_id,
        context.run_id,
        context.request_id,
        context.websocket_id,
    )


class JsonProtocol:
    """An :class:`actors.ports.Handler` that speaks the frame protocol to an :class:`App`."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.runs_inline = getattr(app, "runs_inline", False) is True

    def __call__(
        self, context: UserExecutionContext, text: str, send: Callable[[str], None]
    ) -> None:
        try:
            frame = parse_frame(text)
        except FrameError as error:
            send(error_frame(error.code, error.message))
            return
        kind = frame["type"]
        if kind == "ping":
            send(_PONG)
        elif kind in self.app.types:
            self.app.on_message(context, frame, lambda reply: send(json.dumps(reply)))
        else:
            send(error_frame("unknown_type", f"unknown frame type {kind[:40]!r}"))
