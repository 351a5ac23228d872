"""What a subscribed Redis connection sends, read from its bytes (pure).

The cluster listener (:mod:`supervisor.cluster.link`) reads its channel on
the node's event loop when it can: :class:`SubscribedReader` takes the
bytes as they come, in pieces of any size, and gives back the payload of
each whole ``message`` (RESP2 arrays and RESP3 pushes alike):

``*3\\r\\n$7\\r\\nmessage\\r\\n$<n>\\r\\n<channel>\\r\\n$<n>\\r\\n<payload>\\r\\n``

Confirmations (``subscribe``, ``unsubscribe``, ``pong``) are read and
dropped; an error reply, or anything a subscribed connection does not send,
raises :class:`~supervisor.errors.SubscribedError`, after which the reader
is of no further use. Nothing here does I/O or keeps anything but the
bytes of a message not yet whole.
"""

from __future__ import annotations

from supervisor.errors import SubscribedError

__all__ = ["SubscribedReader"]

_CRLF = b"\r\n"
_ARRAYS = (b"*", b">")  # RESP2 array, RESP3 push
_CONFIRMATIONS = frozenset({b"subscribe", b"unsubscribe", b"psubscribe", b"punsubscribe", b"pong"})
_MAX_ITEMS = 8  # a pub/sub reply has 2 to 4


class SubscribedReader:
    """Payloads of the ``message`` replies in a subscribed connection's bytes."""

    __slots__ = ("_buffer",)

    def __init__(self) -> None:
        self._buffer = bytearray()

    @property
    def pending(self) -> int:
        """Bytes of a reply not yet whole."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[bytes]:
        """The payloads of every message ``data`` completes, in order."""
        self._buffer += data
        payloads: list[bytes] = []
        start = 0
        while (reply := _reply(self._buffer, start)) is not None:
            items, start = reply
            kind = items[0]
            if kind == b"message" and len(items) == 3 and isinstance(items[2], bytes):
                payloads.append(items[2])
            elif kind not in _CONFIRMATIONS:
                raise SubscribedError(f"not a pub/sub reply: {items[0]!r}")
        del self._buffer[:start]
        return payloads


def _reply(buffer: bytearray, start: int) -> tuple[list[bytes | int], int] | None:
    """The items of the array at ``start`` and where it ends; None until it is whole."""
    line = _line(buffer, start)
    if line is None:
        return None
    head, at = line
    if head[:1] == b"-":
        raise SubscribedError(f"redis answered an error: {head[1:].decode(errors='replace')}")
    count = int(head[1:]) if head[1:].isdigit() else 0
    if head[:1] not in _ARRAYS or not 0 < count <= _MAX_ITEMS:
        raise SubscribedError(f"not a pub/sub reply: {bytes(head[:40])!r}")
    items: list[bytes | int] = []
    for _ in range(count):
        item = _item(buffer, at)
        if item is None:
            return None
        value, at = item
        items.append(value)
    if not isinstance(items[0], bytes):
        raise SubscribedError("not a pub/sub reply: its kind is no string")
    return items, at


def _item(buffer: bytearray, start: int) -> tuple[bytes | int, int] | None:
    """A bulk string or an integer at ``start`` and where it ends; None until it is whole."""
    line = _line(buffer, start)
    if line is None:
        return None
    head, at = line
    sign, rest = head[:1], bytes(head[1:])
    if sign == b":" and rest.lstrip(b"-").isdigit():
        return int(rest), at
    if sign == b"+":
        return rest, at
    if sign != b"$" or not rest.isdigit():
        raise SubscribedError(f"not a pub/sub reply item: {bytes(head[:40])!r}")
    end = at + int(rest)
    if len(buffer) < end + len(_CRLF):
        return None
    if buffer[end : end + len(_CRLF)] != _CRLF:
        raise SubscribedError("a bulk string does not end where its length says")
    return bytes(buffer[at:end]), end + len(_CRLF)


def _line(buffer: bytearray, start: int) -> tuple[bytearray, int] | None:
    """The line at ``start`` without its CRLF, and where the next begins; None until whole."""
    end = buffer.find(_CRLF, start)
    if end < 0:
        return None
    return buffer[start:end], end + len(_CRLF)
