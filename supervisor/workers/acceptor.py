"""The master's listeners: accept, read each request head, then refuse or hand over.

Runs on the master's event loop, with loop callbacks only (no task per
connection). A listener has ``TCP_DEFER_ACCEPT`` set, so the kernel hands
over a connection once its first bytes have come: a client that connects
and says nothing costs no accept, and the head is usually read at once.
For each connection, in turn:

1. :meth:`Acceptor._received` gathers bytes until :func:`head_length`
   finds the head's end (at most :data:`MAX_HEAD` bytes, within
   ``[limits] open_timeout``; at most ``max_concurrent_handshakes`` heads
   read at once, 503 beyond). This is the one step that reads: a PROXY
   protocol header would be read here, before the head;
2. :class:`HandoffPolicy` decides on the parsed head: a refusal is
   written and the socket closed; a hand-off goes to ``hand_off`` (the
   master's), with every byte read so far, and the socket is let go.

What it did with each connection is counted in :attr:`Acceptor.results`:
``handed``, ``refused`` (an HTTP error answered here), ``unavailable``
(503: too many heads at once, or the user's worker down or behind) and
``dropped`` (no whole head in time, or the client went); every answer
written here by its HTTP status in :attr:`Acceptor.answered` (the daemon's
``ws_supervisor_handshakes_total``, with the workers'), and each gets the
access line a single daemon's front writes for a refused handshake
(:func:`supervisor.front.access.handshake_refused`; at DEBUG only for the
address rate's 429).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import errno
import logging
import socket
from collections.abc import Callable

from prometheus_client.core import CounterMetricFamily, Metric

from supervisor.admin.metrics import HANDSHAKE_STATUSES
from supervisor.config.schema import Config
from supervisor.errors import HeadError
from supervisor.front import access
from supervisor.front.limits import ConcurrencyGate
from supervisor.workers.head import head_length, parse_head
from supervisor.workers.routing import HandoffPolicy, Refusal

__all__ = ["Acceptor", "HandOffCall", "listening_sockets"]

log = logging.getLogger(__name__)

HandOffCall = Callable[[int, str, bytes, socket.socket], bool]
"""``(worker, user_id, bytes read, socket) -> accepted``: the master's hand-off."""

_BACKLOG = 4096
_ACCEPTS = 128  # accepted per wake-up, as asyncio's own servers
_PAUSE = 0.1  # seconds without accepting when the process is out of descriptors
_UNAVAILABLE = Refusal(503, "worker unavailable, try again", 1.0)
_BUSY = Refusal(503, "too many handshakes in progress")
_FAILED = Refusal(500, "internal error")


def listening_sockets(host: str, port: int, defer: float) -> list[socket.socket]:
    """Bound, listening, non-blocking sockets for ``host:port``, as asyncio would bind them.

    One per address ``host`` resolves to (every interface for ""), with
    ``SO_REUSEADDR``, and ``TCP_DEFER_ACCEPT`` of ``defer`` seconds.
    """
    infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    bound: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in dict.fromkeys(infos):
            sock = socket.socket(family, kind, proto)
            bound.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT, max(1, round(defer)))
            try:
                sock.bind(address)
            except OSError as error:  # worded as asyncio words it for a single daemon
                reason = (error.strerror or str(error)).lower()
                message = f"error while attempting to bind on address {address!r}: {reason}"
                raise OSError(error.errno, message) from None
            sock.listen(_BACKLOG)
            sock.setblocking(False)
            if port == 0:  # one ephemeral port for every address, as asyncio does not
                port = sock.getsockname()[1]
                break
    except OSError:
        for sock in bound:
            sock.close()
        raise
    return bound


class _Reading:
    """One connection whose head is being read."""

    __slots__ = ("address", "fd", "received", "sock", "timer")

    def __init__(self, sock: socket.socket, address: str) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.address = address
        self.received = b""
        self.timer: asyncio.TimerHandle | None = None


class Acceptor:
    """Accepts on the daemon's port and hands each connection over; loop only."""

    def __init__(self, config: Config, policy: HandoffPolicy, hand_off: HandOffCall) -> None:
        self.config = config
        self.policy = policy
        self.hand_off = hand_off
        self.open_timeout = config.limits.open_timeout
        self.gate = ConcurrencyGate(config.limits.max_concurrent_handshakes)
        self.results: collections.Counter[str] = collections.Counter()
        self.answered: collections.Counter[int] = collections.Counter()
        self.busy = 0  # 503: more heads at once than max_concurrent_handshakes
        self.worker_unavailable = 0  # 503: the user's worker down, or not taking the socket
        self.listeners: list[socket.socket] = []
        self._reading: dict[int, _Reading] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self, listeners: list[socket.socket]) -> None:
        """Loop: accept on ``listeners`` (from :func:`listening_sockets`)."""
        self._loop = asyncio.get_running_loop()
        self.listeners = listeners
        for listener in listeners:
            self._loop.add_reader(listener.fileno(), self._accept, listener)

    @property
    def port(self) -> int:
        """The port accepted on."""
        return int(self.listeners[0].getsockname()[1]) if self.listeners else 0

    def close(self) -> None:
        """Stop accepting, and drop the connections whose head is still being read."""
        assert self._loop is not None
        for listener in self.listeners:
            with contextlib.suppress(ValueError, OSError):
                self._loop.remove_reader(listener.fileno())
            listener.close()
        self.listeners = []
        for reading in list(self._reading.values()):
            self._end(reading)
            reading.sock.close()

    def answered_metrics(self) -> list[Metric]:
        """The handshakes answered here, as a worker's front counts its own (summed with theirs)."""
        handshakes = CounterMetricFamily(
            "ws_supervisor_handshakes",
            "Opening handshakes whose request was read, by the HTTP status answered.",
            labels=["status"],
        )
        by_label: dict[str, int] = {}
        for status, count in self.answered.items():
            label = str(status) if str(status) in HANDSHAKE_STATUSES else "other"
            by_label[label] = by_label.get(label, 0) + count
        for label, count in by_label.items():
            handshakes.add_metric([label], count)
        failures = CounterMetricFamily(
            "ws_supervisor_admission_failures",
            "Admissions the service failed, by outcome (a user over their own quota is none).",
            labels=["outcome"],
        )
        failures.add_metric(["handshakes_busy"], self.busy)
        failures.add_metric(["worker_unavailable"], self.worker_unavailable)
        failures.add_metric(["internal_error"], self.answered[500])
        return [handshakes, failures]

    # --- accepting ----------------------------------------------------------------------

    def _accept(self, listener: socket.socket) -> None:
        for _ in range(_ACCEPTS):
            try:
                sock, peer = listener.accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                return
            except OSError as error:
                if error.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    self._pause(listener, error)
                    return
                raise
            sock.setblocking(False)
            reading = _Reading(sock, str(peer[0]))
            if not self.gate.try_enter():
                self._read_once(reading)
                self.busy += 1
                self._answer(reading, _BUSY, "unavailable")
                continue
            self._start_reading(reading)

    def _pause(self, listener: socket.socket, error: OSError) -> None:
        """Out of descriptors: stop accepting on ``listener`` for a moment."""
        assert self._loop is not None
        log.error("accept: %s; accepting again in %gs", error.strerror, _PAUSE)
        self._loop.remove_reader(listener.fileno())
        self._loop.call_later(_PAUSE, self._resume, listener)

    def _resume(self, listener: socket.socket) -> None:
        if listener in self.listeners and self._loop is not None:
            self._loop.add_reader(listener.fileno(), self._accept, listener)

    # --- reading the head ---------------------------------------------------------------------

    def _start_reading(self, reading: _Reading) -> None:
        assert self._loop is not None
        if self._read(reading):
            return
        self._reading[reading.fd] = reading
        self._loop.add_reader(reading.fd, self._read, reading)
        reading.timer = self._loop.call_later(self.open_timeout, self._timed_out, reading)

    def _read_once(self, reading: _Reading) -> None:
        with contextlib.suppress(OSError):
            reading.received += reading.sock.recv(65536)

    def _read(self, reading: _Reading) -> bool:
        """Read what has come; True once the connection is dealt with (handed, answered, gone)."""
        try:
            data = reading.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return False
        except OSError:
            data = b""
        if not data:  # the client went before its head was whole
            self._end(reading)
            self.gate.leave()
            self.results["dropped"] += 1
            reading.sock.close()
            return True
        reading.received += data
        return self._received(reading)

    def _received(self, reading: _Reading) -> bool:
        """The bytes so far: wait for more (False), or decide and act (True)."""
        try:
            length = head_length(reading.received)
            if length is None:
                return False
            head = parse_head(reading.received[:length])
        except HeadError as error:
            self._end(reading)
            self.gate.leave()
            self._answer(reading, Refusal(error.status, error.reason), "refused")
            return True
        self._end(reading)
        self.gate.leave()
        try:
            verdict = self.policy.decide(head, reading.address)
        except Exception:  # a bug of ours: this connection fails, no other
            log.exception("deciding on a request head failed")
            self._answer(reading, _FAILED, "refused")
            return True
        if isinstance(verdict, Refusal):
            self._answer(reading, verdict, "refused")
        elif self.hand_off(verdict.worker, verdict.user_id, reading.received, reading.sock):
            self.results["handed"] += 1
        else:
            self.refuse_unavailable(reading.sock, reading.address)
        return True

    def _timed_out(self, reading: _Reading) -> None:
        reading.timer = None
        self._end(reading)
        self.gate.leave()
        self.results["dropped"] += 1
        reading.sock.close()

    def _end(self, reading: _Reading) -> None:
        """Stop reading ``reading``'s socket (its head is whole, or it is given up)."""
        assert self._loop is not None
        if self._reading.pop(reading.fd, None) is not None:
            self._loop.remove_reader(reading.fd)
        if reading.timer is not None:
            reading.timer.cancel()
            reading.timer = None

    def refuse_unavailable(self, sock: socket.socket, address: str = "") -> None:
        """Answer 503 on a connection that could not be handed over after all."""
        self.worker_unavailable += 1
        if not address:
            with contextlib.suppress(OSError):
                address = str(sock.getpeername()[0])
        self._write(sock, address, _UNAVAILABLE, "unavailable")

    def _answer(self, reading: _Reading, refusal: Refusal, result: str) -> None:
        self._write(reading.sock, reading.address, refusal, result)

    def _write(self, sock: socket.socket, address: str, refusal: Refusal, result: str) -> None:
        self.results[result] += 1
        self.answered[refusal.status] += 1
        flood = refusal.status == 429  # the master's one 429 is the address rate's
        access.handshake_refused(address, refusal.status, refusal.reason, flood=flood)
        with contextlib.suppress(OSError):
            sock.send(refusal.encode())
        sock.close()
