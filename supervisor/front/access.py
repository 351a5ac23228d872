"""The access log: one line per connection, written when it ends; one per refused handshake.

A connection costs one line of ours at INFO, and none of websockets' (the
front silences its per-connection ``connection open`` and ``connection
closed`` below DEBUG); one the front ends itself gets one more, saying why
(``shed ... reason=`` from the bridge, ``keepalive missed`` from the
keepalive: docs/SECURITY.md). The line is written at the
end, not at the upgrade, because only then does it tell the whole story:
who (user, thread, websocket id), from where (the client's address, and the
trusted proxy it came through, if any), how long, how many frames
each way, and how it ended (the close code, and which side closed first).
An open connection shows in ``/debug/state`` and ``ws-supervisor dump``;
at DEBUG the tree adds a line at each admission and each reap. A
connection open when the process is killed gets no line: a drain
(SIGTERM) closes every connection with 1001 first, so each gets its line.
Nor does an admission whose upgrade never completes (the client left
before the 101): it frees its slot at once, and the tree's DEBUG lines
show it.

A refused handshake gets one line too, with its status and reason, except
a refusal by the per-address handshake rate (429): the limit is there for
floods, which must not turn into a flood of log lines (DEBUG only).

The front answers every refused handshake here (:func:`respond`,
:func:`refuse`: the HTTP response and its line in one call), and names
the client here (:func:`remote_host`, :func:`proxy_of`).

Runs on the event loop; the lines go to the log writer's thread
(:mod:`supervisor.logs`), so writing one costs the loop a queued record.
"""

from __future__ import annotations

import http
import logging
import math
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.http11 import Response

from actors.context import UserExecutionContext
from actors.ports import Admission, Handle

__all__ = [
    "ACCESS",
    "Seen",
    "closed_by",
    "connection_ended",
    "handshake_refused",
    "host_of",
    "proxy_of",
    "refuse",
    "remote_host",
    "respond",
    "websockets_logger",
]

ACCESS = logging.getLogger("supervisor.access")
"""The access log's logger: route or silence it on its own by this name."""

Seen = tuple[str, str]
"""Where a handshake came from: (the client's address, the socket peer's: its proxy, or itself)."""

_REFUSALS = {
    "rejected_quota": http.HTTPStatus.TOO_MANY_REQUESTS,
    "rejected_node": http.HTTPStatus.SERVICE_UNAVAILABLE,
    "rejected_unavailable": http.HTTPStatus.SERVICE_UNAVAILABLE,
}


def closed_by(close_rcvd_then_sent: bool | None) -> str:
    """Which side began the closing handshake: ``client``, ``server``, or ``none`` (dropped)."""
    if close_rcvd_then_sent is None:
        return "none"
    return "client" if close_rcvd_then_sent else "server"


def connection_ended(
    connection: ServerConnection,
    handle: Handle,
    *,
    address: str,
    shed_code: int | None,
    now: float,
    proxy: str | None = None,
) -> None:
    """The access line of one connection that has ended (``now``: the wall clock of its stats).

    Its code is the one the server shed it with (``shed_code``), else the
    close code received (1006 for none); ``by`` is :func:`closed_by`'s answer.
    ``address`` is the client's, read from a trusted ``proxy`` when there is
    one (then named after it, ``proxy=``).
    """
    if not ACCESS.isEnabledFor(logging.INFO):
        return
    if shed_code is not None:
        code: int | None = shed_code
        by = "server"
    else:
        code, by = connection.close_code, closed_by(connection.protocol.close_rcvd_then_sent)
    context, stats = handle.context, handle.stats
    ACCESS.info(
        "closed user_id=%s thread_id=%s websocket_id=%s address=%s%s code=%s by=%s "
        "seconds=%.3f frames_in=%d frames_out=%d",
        context.user_id,
        context.thread_id,
        context.websocket_id,
        address or "-",
        _via(proxy),
        "-" if code is None else code,
        by,
        max(0.0, now - stats.connected_at),
        stats.messages_in,
        stats.messages_out,
    )


def handshake_refused(
    address: str,
    status: int,
    reason: str,
    context: UserExecutionContext | None = None,
    *,
    flood: bool = False,
    proxy: str | None = None,
) -> None:
    """The access line of one refused handshake (DEBUG only for a ``flood`` refusal)."""
    level = logging.DEBUG if flood else logging.INFO
    if not ACCESS.isEnabledFor(level):
        return
    where = (address or "-", _via(proxy))
    if context is None:
        ACCESS.log(level, "refused address=%s%s status=%d reason=%s", *where, status, reason)
        return
    ACCESS.log(
        level,
        "refused user_id=%s thread_id=%s websocket_id=%s address=%s%s status=%d reason=%s",
        context.user_id,
        context.thread_id,
        context.websocket_id,
        *where,
        status,
        reason,
    )


def _via(proxy: str | None) -> str:
    """`` proxy=HOST`` after the address when a trusted proxy gave it, else nothing."""
    return "" if proxy is None else f" proxy={proxy}"


def respond(
    connection: ServerConnection,
    seen: Seen,
    status: http.HTTPStatus,
    text: str,
    context: UserExecutionContext | None = None,
    *,
    flood: bool = False,
) -> Response:
    """The refusal of a handshake, with its one access line."""
    client, peer = seen
    proxy = proxy_of(client, peer)
    handshake_refused(client, status, text, context, flood=flood, proxy=proxy)
    return connection.respond(status, text + "\n")


def refuse(
    connection: ServerConnection,
    seen: Seen,
    admission: Admission,
    context: UserExecutionContext,
) -> Response:
    """The refusal of an admission (429 or 503, with ``Retry-After``), with its access line."""
    status = _REFUSALS.get(admission.result, http.HTTPStatus.SERVICE_UNAVAILABLE)
    response = respond(connection, seen, status, admission.reason or admission.result, context)
    if admission.retry_after is not None:
        response.headers["Retry-After"] = str(max(1, math.ceil(admission.retry_after)))
    return response


def remote_host(connection: ServerConnection) -> str:
    """The host of the connection's ``remote_address``."""
    try:
        return host_of(connection.remote_address)
    except (AttributeError, OSError):  # pragma: no cover - a transport already gone
        return ""


def host_of(address: Any) -> str:
    """The host of a socket address (without the port); "" for none."""
    if isinstance(address, tuple | list) and address:
        return str(address[0])
    return str(address or "")


def proxy_of(client: str, peer: str) -> str | None:
    """The trusted proxy that gave ``client`` (the socket's ``peer``); None for a direct client."""
    return None if not peer or peer == client else peer


def websockets_logger(debug: bool) -> logging.Logger:
    """websockets' own logger, its per-connection INFO lines silenced unless ``debug``.

    ``connection open``, ``connection closed``, ``connection rejected`` and
    ``HTTP response sent``: the access log has one line of ours per
    connection instead. websockets' warnings and errors still come through.
    """
    logger = logging.getLogger("supervisor.front.server.websockets")
    logger.setLevel(logging.NOTSET if debug else logging.WARNING)
    return logger
