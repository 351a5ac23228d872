"""The master's link to one worker: a Unix ``SOCK_SEQPACKET`` socket pair, both ways.

One message is one record of the socket (SEQPACKET keeps their bounds, so
descriptors are never read with another message's bytes):

- hand-offs, master to worker: for each connection, the user id and the
  bytes the master read of it, and beside them the connections' sockets
  themselves (``SCM_RIGHTS``), in the same order; the master closes its
  copies once they are sent. The hand-offs of one turn of the master's
  loop go together, up to :data:`BATCH` of them, in one message: waking a
  process on another core costs more than the rest of a hand-off on a
  virtual machine, so a busy master wakes each worker once per turn;
- a control message, either way, a JSON object: the worker's setup
  (master to worker, first), ``ready`` (worker to master).

:class:`Channel` never blocks: a hand-off waits, at most ``limit`` of them,
until the end of the loop's turn or until the socket has room; past the
bound, or once the peer is gone, the connection is refused (the master
answers it 503). Every method runs on the event loop of its process,
except :meth:`Channel.receive_control`, which blocks and is for a worker's
start, before its loop runs.
"""

from __future__ import annotations

import array
import asyncio
import collections
import json
import socket
import struct
from collections.abc import Callable, Iterator
from typing import Any

from supervisor.workers.head import MAX_HEAD

__all__ = [
    "BATCH",
    "Channel",
    "decode_control",
    "decode_handoffs",
    "encode_control",
    "encode_handoffs",
]

BATCH = 64
"""Hand-offs sent in one message at most (the kernel takes up to 253 descriptors)."""

_HANDOFFS = b"H"
_CONTROL = b"C"
_RECORD = struct.Struct("!HI")  # the user id's length, then the bytes read's
_BATCH_BYTES = 64 * 1024  # a message grows past this only by its last hand-off
_RECEIVED = _BATCH_BYTES + MAX_HEAD + 4096  # the largest message of hand-offs
_LARGEST = 1 << 20  # a control message (a setup's config) is a few KiB
_BUFFER = 4 << 20  # bytes of hand-offs in flight: thousands of them
_MESSAGES = 64  # messages read per wake-up

Handed = tuple[str, bytes]


def encode_handoffs(handed: list[Handed]) -> bytes:
    """The bytes of a message of hand-offs (their sockets travel beside them)."""
    parts = [_HANDOFFS]
    for user_id, prefix in handed:
        user = user_id.encode("utf-8", "surrogateescape")
        parts += [_RECORD.pack(len(user), len(prefix)), user, prefix]
    return b"".join(parts)


def decode_handoffs(message: bytes | memoryview) -> Iterator[Handed]:
    """``(user_id, prefix)`` of each hand-off of a message, in order."""
    offset = 1
    while offset < len(message):
        users, read = _RECORD.unpack_from(message, offset)
        offset += _RECORD.size
        user = bytes(message[offset : offset + users]).decode("utf-8", "surrogateescape")
        offset += users
        yield user, bytes(message[offset : offset + read])
        offset += read


def encode_control(payload: dict[str, Any]) -> bytes:
    """A control message's bytes."""
    return _CONTROL + json.dumps(payload, separators=(",", ":")).encode()


def decode_control(message: bytes | memoryview) -> dict[str, Any]:
    """The JSON object of a control message's bytes."""
    payload = json.loads(bytes(message[1:]))
    if not isinstance(payload, dict):
        raise ValueError("a control message is a JSON object")
    return payload


class Channel:
    """One end of a master-worker socket pair.

    ``limit`` bounds the hand-offs that wait to be sent. ``refuse`` is
    called (on the loop) with a connection that could not be handed over
    after all: the worker went while it waited.
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
        self.messages = 0
        self._waiting: collections.deque[tuple[Handed, socket.socket]] = collections.deque()
        self._flushing = False  # a flush is due: at the turn's end, or when there is room
        self._writing = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._reading = False
        room = sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
        self._batch_bytes = min(_BATCH_BYTES, room // 4)  # a message must fit the socket

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

        True: the worker will have it (it goes at the end of this turn of the
        loop, or once the socket has room); the caller lets go of ``conn``.
        False: the peer is gone or ``limit`` wait already, and ``conn`` is
        still the caller's to answer.
        """
        if not self.alive or len(self._waiting) >= self.limit:
            return False
        self._waiting.append(((user_id, prefix), conn))
        if not self._flushing:
            self._flushing = True
            self._writer().call_soon(self._flush)
        return True

    def send_control(self, payload: dict[str, Any]) -> None:
        """Send a control message; raises OSError if it cannot go now (full or gone)."""
        self.sock.send(encode_control(payload))

    def _flush(self) -> None:
        """Send what waits, :data:`BATCH` at a time; wait for room when the socket is full."""
        while self._waiting and self.alive:
            batch: list[tuple[Handed, socket.socket]] = []
            size = 0
            for handed, conn in self._waiting:
                if len(batch) == BATCH or (batch and size + len(handed[1]) > self._batch_bytes):
                    break
                batch.append((handed, conn))
                size += len(handed[1])
            if not self._send(batch):
                return
            for _ in batch:
                self._waiting.popleft()
        self._flushing = False
        if self._writing:
            self._writing = False
            self._writer().remove_writer(self.sock.fileno())

    def _send(self, batch: list[tuple[Handed, socket.socket]]) -> bool:
        """True once sent (the sockets then closed here); False to wait (or the peer died)."""
        message = encode_handoffs([handed for handed, _ in batch])
        fds = array.array("i", [conn.fileno() for _, conn in batch])
        try:
            self.sock.sendmsg([message], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds)])
        except (BlockingIOError, InterruptedError):
            if not self._writing:
                self._writing = True
                self._writer().add_writer(self.sock.fileno(), self._flush)
            return False
        except OSError:
            self._die()
            return False
        for _, conn in batch:
            conn.close()  # the message in flight holds the connection now
        self.sent += len(batch)
        self.messages += 1
        return True

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
        if self._writing:
            self._writing = False
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
        buffer = bytearray(_RECEIVED)
        view = memoryview(buffer)
        ancillary = socket.CMSG_SPACE(BATCH * array.array("i").itemsize)

        def gone() -> None:
            if self._reading:
                self._reading = False
                loop.remove_reader(self.sock.fileno())
                self._die()
                on_gone()

        def readable() -> None:
            for _ in range(_MESSAGES):
                try:
                    size, ancdata, flags, _ = self.sock.recvmsg_into([buffer], ancillary)
                except (BlockingIOError, InterruptedError):
                    return
                except OSError:
                    gone()
                    return
                conns = _sockets_of(ancdata)
                if size == 0 and not conns:  # the peer closed its end
                    gone()
                    return
                message = view[:size]
                if flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC):
                    _close_all(conns)
                elif message[:1] == _HANDOFFS:
                    handed = list(decode_handoffs(message))
                    if len(handed) != len(conns):
                        _close_all(conns)
                        continue
                    for (user_id, prefix), conn in zip(handed, conns, strict=True):
                        on_handoff(user_id, prefix, conn)
                elif message[:1] == _CONTROL and not conns:
                    on_control(decode_control(message))
                else:
                    _close_all(conns)

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


def _sockets_of(ancdata: list[tuple[int, int, bytes]]) -> list[socket.socket]:
    """The sockets passed in a message's ancillary data, in order."""
    fds = array.array("i")
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(data[: len(data) - len(data) % fds.itemsize])
    return [socket.socket(fileno=fd) for fd in fds]


def _close_all(conns: list[socket.socket]) -> None:
    for conn in conns:
        conn.close()
