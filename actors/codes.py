"""The WebSocket close codes ws-supervisor uses, each for one reason only."""

from __future__ import annotations

import enum

__all__ = ["ServerCloseCode"]


class ServerCloseCode(enum.IntEnum):
    """The close codes the server sends; the README's table documents each one.

    Named apart from websockets' own ``websockets.frames.CloseCode``, which
    lists every code of RFC 6455.
    """

    NORMAL = 1000
    """The client or the application ended the connection."""
    GOING_AWAY = 1001
    """The daemon is shutting down (drain)."""
    POLICY = 1008
    """A policy was broken (authentication, rate)."""
    TOO_BIG = 1009
    """A message was larger than allowed."""
    INTERNAL_ERROR = 1011
    """The manager crashed more often than the restart intensity allows."""
    SERVICE_RESTART = 1012
    """The user's supervisor crashed and was restarted; reconnect."""
    TRY_AGAIN_LATER = 1013
    """The quota turned out to be full after the upgrade."""
    SUPERSEDED = 4001
    """A newer connection resumed the same thread."""
    EVICTED = 4002
    """Closed to make room: evicted at quota, or shed at an emergency level."""
    IDLE_TIMEOUT = 4003
    """No longer live: idle past the idle timeout, or keepalive missed."""
    SLOW_CONSUMER = 4004
    """The client read too slowly: more frames waited to be written than allowed."""
