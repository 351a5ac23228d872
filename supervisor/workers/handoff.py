"""The master's link to one worker: a Unix ``SOCK_SEQPACKET`` socket pair, both ways.

One message is one record (SEQPACKET keeps their bounds, so a descriptor
is never read with another message's bytes):

- a hand-off, master to worker: the user id, the bytes the master read of
  the connection, and the connection's socket itself (``SCM_RIGHTS``,
  :func:`socket.send_fds`); the master closes its copy once it is sent;
- a control message, either way, a JSON object: the worker's setup
  (master to worker, first), ``ready`` (worker to master).

:class:`Channel` never blocks: a hand-off that finds the socket's buffer
full waits in a bounded queue, sent as soon as the socket is writable; past
the bound, or once the peer is gone, the connection is refused (the
master answers it 503). Every method runs on the event loop of its
process, except :meth:`Channel.receive_control`, which blocks and is for a
worker's start, before its loop runs.
"""

from __future__ import annotations

import asyncio
import collections
import json
import socket
import struct
from collections.abc import Callable
from typing import Any

from supervisor.workers.head import MAX_HEAD

__all__ = ["Channel", "decode_control", "decode_handoff", "encode_control", "encode_handoff"]

_HANDOFF = b"H"
_CONTROL = b"C"
_USER = struct.Struct("!H")
_LARGEST = 1 << 20  # a control message (a setup's config) is a few KiB
_BUFFER = 4 << 20  # bytes of hand-offs in flight: thousands of them
_BATCH = 256  # messages read per wake-up


def encode_handoff(user_id: str, prefix: bytes) -> bytes:
    """A hand-off's bytes (its socket travels beside them)."""
    user = user_id.encode("utf-8", "surrogateescape")
    return _HANDOFF + _USER.pack(len(user)) + user + prefix


def decode_handoff(message: bytes) -> tuple[str, bytes]:
    """``(user_id, prefix)`` of a hand-off's bytes."""
    (length,) = _USER.unpack_from(message, 1)
    start = 1 + _USER.size
    user = message[start : start + length].decode("utf-8", "surrogateescape")
    return user, message[start + length :]


def encode_control(payload: dict[str, Any]) -> bytes:
    """A control message's bytes."""
    return _CONTROL + json.dumps(payload, separators=(",", ":")).encode()


def decode_control(message: bytes) -> dict[str, Any]:
    """The JSON object of a control message's bytes."""
    payload = json.loads(message[1:])
    if not isinstance(payload, dict):
        raise ValueError("a control message is a JSON object")
    return payload


class Channel:
    """One end of a master-worker socket pair.

    ``limit`` bounds the hand-offs that wait for room in the socket's
    buffer. ``refuse`` is called (on the loop) with a connection that
    could not be handed over after all: the worker went while it waited.
    """

    def __init__(
        self,
        sock: socket.socket,
        *,
        limit: int = 1024,
        refuse: Callable[[socket.socket], None] = socket.socket.close,
    ) -> None:
        sock.setblocking(False)
        self.sock = sock
        self.limit = limit
        self.refuse = refuse
        self.alive = True
        self.sent = 0
        self._waiting: collections.deque[tuple[bytes, socket.socket]] = collections.deque()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._reading = False

    @staticmethod
    def pair() -> tuple[socket.socket, socket.socket]:
        """A new socket pair: the master's end, the worker's end (inheritable)."""
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        mine.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, _BUFFER)
        theirs.set_inheritable(True)
        return mine, theirs

    # --- sending ----------------------------------------------------------------------

    def hand_off(self, user_id: str, prefix: bytes, conn: socket.socket) -> bool:
        """Loop: send ``conn`` (read ``prefix`` so far) for ``user_id``; False if refused.

        True: the worker has it or will (a wait in the queue); the caller
        lets go of ``conn``. False: the peer is gone or the queue is full,
        and ``conn`` is still the caller's to answer.
        """
        if not self.alive or len(self._waiting) >= self.limit:
            return False
        message = encode_handoff(user_id, prefix)
        if self._waiting or not self._send(message, conn):
            if not self.alive:
                return False
            self._waiting.append((message, conn))
            if len(self._waiting) == 1:
                self._writer().add_writer(self.sock.fileno(), self._flush)
        return True

    def send_control(self, payload: dict[str, Any]) -> None:
        """Send a control message; raises OSError if it cannot go now (full or gone)."""
        self.sock.send(encode_control(payload))

    def _send(self, message: bytes, conn: socket.socket) -> bool:
        """True once sent (``conn`` then closed here); False to wait (or the peer died)."""
        try:
            socket.send_fds(self.sock, [message], [conn.fileno()])
        except (BlockingIOError, InterruptedError):
            return False
        except OSError:
            self._die()
            return False
        conn.close()  # the message in flight holds the connection now
        self.sent += 1
        return True

    def _flush(self) -> None:
        while self._waiting:
            message, conn = self._waiting[0]
            if not self._send(message, conn):
                return  # still full (or dead: _die took the rest)
            self._waiting.popleft()
        self._writer().remove_writer(self.sock.fileno())

    def _writer(self) -> asyncio.AbstractEventLoop:
        """The loop this channel runs on: the one running when first needed."""
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return self._loop

    def _die(self) -> None:
        """The peer is gone: refuse what waits, and everything after."""
        if not self.alive:
            return
        self.alive = False
        waiting, self._waiting = self._waiting, collections.deque()
        if waiting:
            self._writer().remove_writer(self.sock.fileno())
        for _, conn in waiting:
            self.refuse(conn)

    # --- receiving ----------------------------------------------------------------------

    def receive(
        self,
        on_handoff: Callable[[str, bytes, socket.socket], None],
        on_control: Callable[[dict[str, Any]], None],
        on_gone: Callable[[], None],
    ) -> None:
        """Loop: call ``on_handoff`` or ``on_control`` per message; ``on_gone`` once at the end."""
        loop = self._writer()

        def gone() -> None:
            if self._reading:
                self._reading = False
                loop.remove_reader(self.sock.fileno())
                self._die()
                on_gone()

        def readable() -> None:
            for _ in range(_BATCH):
                try:
                    message, fds, flags, _ = socket.recv_fds(self.sock, MAX_HEAD + 1024, 1)
                except (BlockingIOError, InterruptedError):
                    return
                except OSError:
                    gone()
                    return
                if not message and not fds:  # the peer closed its end
                    gone()
                    return
                conns = [socket.socket(fileno=fd) for fd in fds]
                if flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC):
                    for conn in conns:
                        conn.close()
                elif message[:1] == _HANDOFF and len(conns) == 1:
                    user_id, prefix = decode_handoff(message)
                    on_handoff(user_id, prefix, conns[0])
                elif message[:1] == _CONTROL and not conns:
                    on_control(decode_control(message))
                else:
                    for conn in conns:
                        conn.close()

        self._reading = True
        loop.add_reader(self.sock.fileno(), readable)

    def receive_control(self, timeout: float) -> dict[str, Any]:
        """Block until a control message comes (a worker's setup); OSError/ValueError if not."""
        self.sock.settimeout(timeout)
        try:
            message = self.sock.recv(_LARGEST)
        finally:
            self.sock.setblocking(False)
        if not message:
            raise ConnectionError("the master closed the channel before the setup")
        if message[:1] != _CONTROL:
            raise ValueError("the first message was not the setup")
        return decode_control(message)

    def close(self) -> None:
        """Stop reading and close; what still waits to be sent is refused."""
        if self._reading and self._loop is not None:
            self._reading = False
            self._loop.remove_reader(self.sock.fileno())
        self._die()
        self.sock.close()
