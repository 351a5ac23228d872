"""What one connection may make the server hold, in bytes: the budget and its decisions (pure).

Every way a peer can make the server hold bytes has a bound here, and the
front only carries the decisions out (:mod:`supervisor.front.connection`,
:mod:`supervisor.front.bridge`). No threads and no I/O: every method answers
from the numbers it is given, on whatever thread asks.

The routes, each a term of :meth:`ConnectionBudget.terms` (docs/SECURITY.md
draws the same table with the production numbers):

- the opening handshake: at most ``max_handshake_bytes`` are read before
  the upgrade (431 beyond), and its request is kept for the connection's life;
- the frame being read: the read buffer, its copies while it is unmasked and
  inflated, up to ``max_message_size`` (1009 beyond, from websockets);
- the assembler: at most :data:`ASSEMBLER_HIGH` + 1 complete frames wait for
  the handler before reading pauses, plus the fragments of one message;
- the manager's inbox: at most ``max_inbound_bytes`` of messages wait for a
  busy handler (1008 beyond);
- the parse: one message at a time is parsed and answered, transiently
  :data:`JSON_EXPANSION` times its size at the worst (measured);
- the outbound queue: at most ``max_outbound_bytes`` (and
  ``max_outbound_queue`` frames) wait to be written (4004 beyond);
- the transport's write buffer: reading pauses while it is over
  :data:`WRITE_HIGH`, so it holds at most that, one frame and the pongs of
  one read; a buffer past :attr:`ConnectionBudget.write_ceiling` is shed
  (1008 when the read that filled it held control frames, else 4004);
- compression: one inflate and one deflate state, windows of 2^12;
- the connection's own objects, idle.
"""

from __future__ import annotations

import attrs

from actors.codes import ServerCloseCode
from actors.ports import INBOUND_OVERHEAD
from supervisor.config.schema import Config

__all__ = [
    "ASSEMBLER_HIGH",
    "ASSEMBLER_LOW",
    "CONNECTION_FIXED",
    "DEFLATE_WINDOW_BITS",
    "FRAGMENT_OVERHEAD",
    "HEADER_OVERHEAD",
    "INBOUND_TEXT_OVERHEAD",
    "JSON_EXPANSION",
    "MAX_FRAGMENTS",
    "MAX_HEADERS",
    "READ_CHUNK",
    "WRITE_HIGH",
    "ZLIB_STATE",
    "ConnectionBudget",
]

KIB = 1024
MIB = 1024 * KIB

WRITE_HIGH = 32 * KIB
"""The transport's high-water mark (``write_limit``): past it writing, and reading, pause."""

READ_CHUNK = 256 * KIB
"""What asyncio reads from a socket at once (its selector transport's ``max_size``)."""

ASSEMBLER_HIGH = 4
"""Complete frames that may wait for the handler before reading pauses (``max_queue``)."""

ASSEMBLER_LOW = 1
"""Reading resumes once no more than this many frames wait."""

MAX_FRAGMENTS = 4096
"""Fragments websockets assembles into one message (1009 beyond)."""

FRAGMENT_OVERHEAD = 256
"""Bytes a fragment costs beyond its data while its message is assembled (a frame object)."""

MAX_HEADERS = 128
"""Header lines websockets parses in a request (431 beyond)."""

HEADER_OVERHEAD = 384
"""Bytes a parsed header costs beyond its text (measured: about 300)."""

INBOUND_TEXT_OVERHEAD = 80
"""Bytes a str takes beyond the UTF-8 bytes it was decoded from (its header)."""

JSON_EXPANSION = 40
"""Peak bytes of parsing a frame and echoing it, per byte of the frame (measured: 34 at worst)."""

DEFLATE_WINDOW_BITS = 12
"""The LZ77 window of both directions of permessage-deflate (2^12 bytes)."""

ZLIB_STATE = 64 * KIB
"""One inflate and one deflate state with windows of 2^12 and memLevel 5 (about 50 KiB)."""

CONNECTION_FIXED = 64 * KIB
"""An idle connection's objects: protocol, transport, handle, manager (measured 47 to 58 KiB)."""

_SLOW_CONSUMER = (int(ServerCloseCode.SLOW_CONSUMER), "slow consumer")
_CONTROL_FLOOD = (int(ServerCloseCode.POLICY), "control frame flood")


@attrs.frozen
class ConnectionBudget:
    """One connection's byte budget: its limits, what happens past each, and the worst case.

    Defaults are production's (``Config()``); build a node's with :meth:`from_config`.
    """

    max_message_size: int = 1 * MIB
    max_handshake_bytes: int = 16 * KIB
    max_inbound_bytes: int = 2 * MIB
    max_outbound_bytes: int = 4 * MIB
    max_outbound_frames: int = 1000
    compression: bool = True

    @classmethod
    def from_config(cls, config: Config) -> ConnectionBudget:
        """The budget of a node running ``config``."""
        limits = config.limits
        return cls(
            max_message_size=config.server.max_message_size,
            max_handshake_bytes=limits.max_handshake_bytes,
            max_inbound_bytes=limits.max_inbound_bytes,
            max_outbound_bytes=limits.max_outbound_bytes,
            max_outbound_frames=limits.max_outbound_queue,
            compression=config.server.compression == "deflate",
        )

    # --- decisions ----------------------------------------------------------------------

    def handshake_over(self, received: int) -> bool:
        """True once a client has sent more than it may before the upgrade (431, or cut)."""
        return received > self.max_handshake_bytes

    def inbound_over(self, waiting: int, cost: int) -> bool:
        """True if a message of ``cost`` bytes must not join ``waiting`` bytes in the inbox (1008).

        A message alone is always taken (websockets bounds it by
        ``max_message_size``), so a handler is never starved of one.
        """
        return waiting > 0 and waiting + cost > self.max_inbound_bytes

    def outbound_over(self, frames: int, queued: int) -> bool:
        """True once ``frames`` frames of ``queued`` bytes wait to be written: too many (4004)."""
        return frames > self.max_outbound_frames or queued > self.max_outbound_bytes

    @property
    def write_ceiling(self) -> int:
        """The most the transport's buffer may hold: the high-water mark, one frame, one read."""
        return WRITE_HIGH + READ_CHUNK + self.max_outbound_bytes

    def write_over(self, buffered: int) -> bool:
        """True if the transport's buffer holds more than :attr:`write_ceiling`."""
        return buffered > self.write_ceiling

    @staticmethod
    def write_overflow(control_frames: int) -> tuple[int, str]:
        """The close for a buffer over the ceiling, given the control frames of the last read.

        Pongs answering a ping flood are a policy matter (1008); anything
        else is a client that does not read (4004).
        """
        return _CONTROL_FLOOD if control_frames else _SLOW_CONSUMER

    @staticmethod
    def outbound_overflow() -> tuple[int, str]:
        """The close for an outbound queue over its budget: a slow consumer (4004)."""
        return _SLOW_CONSUMER

    @staticmethod
    def inbound_overflow() -> tuple[int, str]:
        """The close for an inbox over its budget: the client outpaces its handler (1008)."""
        return (int(ServerCloseCode.POLICY), "inbound backlog")

    # --- the worst case -----------------------------------------------------------------

    def terms(self) -> dict[str, int]:
        """Each route's bound, in bytes; they can all be full at once, so they add up."""
        m = self.max_message_size
        return {
            "handshake": 2 * self.max_handshake_bytes + MAX_HEADERS * HEADER_OVERHEAD,
            "frame being read": 3 * m + READ_CHUNK,
            "assembler": (ASSEMBLER_HIGH + 1) * m + MAX_FRAGMENTS * FRAGMENT_OVERHEAD,
            "inbox": max(self.max_inbound_bytes, m + INBOUND_TEXT_OVERHEAD + INBOUND_OVERHEAD),
            "parse": JSON_EXPANSION * m,
            "outbound queue": self.max_outbound_bytes,
            "transport": self.write_ceiling,
            "compression": ZLIB_STATE if self.compression else 0,
            "connection": CONNECTION_FIXED,
        }

    @property
    def per_connection(self) -> int:
        """The worst case of one connection: every term full at once."""
        return sum(self.terms().values())

    def per_user(self, connections: int, parsers: int) -> int:
        """The worst case of a user with ``connections``, ``parsers`` of which may parse at once.

        A parse is transient and runs on a dispatcher worker or on the event
        loop, so no more of them than there are such threads hold memory at once.
        """
        parse = self.terms()["parse"]
        return connections * (self.per_connection - parse) + min(connections, parsers) * parse
