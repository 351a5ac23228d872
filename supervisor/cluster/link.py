"""The cluster link: keeps this node's leases alive and hears what other nodes ask.

Two daemon threads beside the supervision tree, both started and stopped by
the daemon (or an embedding program):

- *maintenance*: every ``[redis] renew_interval`` (from the start of one
  renewal to the start of the next) it renews the node's leases, or pings
  Redis if it holds none (:meth:`RedisLedger.renew_all`), so that every node
  is marked unavailable within ``renew_interval + timeout`` of Redis going
  away; while Redis is unavailable it tries again every ``retry_interval``
  and, once Redis answers, re-registers the node's slots
  (:meth:`RedisLedger.recover`);
- *listener*: subscribed to the node's channel, it turns each ``supersede``
  or ``evict`` message from another node into a :class:`TakeBack`, and
  hands push messages to the node's :class:`~supervisor.cluster.push.ClusterPush`.
  It makes its own connection (as the script links make theirs, so
  through the sentinels with a Sentinel URL) and subscribes. Started with
  the node's event loop, it then hands the connection's socket to that
  loop, which reads it (:class:`~supervisor.cluster.subscribed.SubscribedReader`)
  and hands each message on in the same turn: a push's frame goes from
  the socket to the connection's transport with no thread woken between
  them (the tree's idle actors run their turns there; their replies to
  other nodes are written from it); the thread waits until the loop gives
  the socket back. Over TLS, without a loop, or after the loop met bytes
  it could not read, the thread reads the connection itself, each read
  waiting at most :data:`LISTEN_WAIT` so that it sees a stop. Either way,
  without redis-py's ``PubSub`` layers (a readiness poll, a retry wrapper
  and a message dict per message). After a Redis error it connects and
  subscribes again every ``retry_interval``.

Each :class:`TakeBack` goes to ``take_back`` (the tree closes the connection
with 4001 or 4002). A message lost while the listener reconnects is made up
for by the next renewal, which reports the slots this node no longer holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable
from typing import Any, cast

import redis

from actors.messages import TakeBack
from actors.observer import CleanupReason
from supervisor.cluster.ledger import RedisLedger
from supervisor.cluster.push import ClusterPush
from supervisor.cluster.subscribed import SubscribedReader
from supervisor.errors import SubscribedError

__all__ = ["LISTEN_WAIT", "ClusterLink", "OnLoop", "parse_message"]

log = logging.getLogger(__name__)

LISTEN_WAIT = 0.2
"""The longest one read of the listener waits for a message (seconds): how soon it sees a stop."""

OnLoop = Callable[..., None]
"""``on_loop(callback, *args)``: run ``callback(*args)`` on the node's event loop (any thread)."""

_READ = 256 * 1024  # bytes read from the subscribed socket per wake-up of the loop

_WHY: dict[str, tuple[CleanupReason, str]] = {
    "supersede": ("supersede", "the thread connected on another node"),
    "evict": ("evict", "evicted for a new connection on another node"),
}


def parse_message(data: bytes | str) -> TakeBack | None:
    """A channel message (``op TAB user_id TAB key TAB websocket_id``); None if malformed."""
    text = data.decode(errors="replace") if isinstance(data, bytes) else data
    parts = text.split("\t")
    if len(parts) != 4 or parts[0] not in _WHY:
        return None
    reason, why = _WHY[parts[0]]
    return TakeBack(parts[1], parts[3], reason, why)


class ClusterLink:
    """The maintenance and listener threads of one node."""

    def __init__(
        self,
        ledger: RedisLedger,
        client: redis.Redis,
        take_back: Callable[[TakeBack], None],
        pushes: ClusterPush | None = None,
    ) -> None:
        self.ledger = ledger
        self.pushes = pushes
        self._client = client
        self._take_back = take_back
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._on_loop: OnLoop | None = None

    def start(self, on_loop: OnLoop | None = None) -> ClusterLink:
        """Probe Redis (a node may start while it is down) and start both threads.

        With ``on_loop`` (what runs a call on the node's event loop; the
        daemon passes the bridge's :func:`~supervisor.front.bridge.run_on_loop`
        for its loop), the channel is read on that loop, as the module says.
        """
        self._on_loop = on_loop
        if not self.ledger.probe():
            log.error(
                "redis ledger unavailable at start; policy %s", self.ledger.policy.on_unavailable
            )
        for name, target in (("maintenance", self._maintain), ("listener", self._listen)):
            thread = threading.Thread(target=target, name=f"cluster-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self, timeout: float = 2.0) -> None:
        """Stop both threads, then the script links (after the releases of the tree's stop)."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout)
        self._threads.clear()
        if self.pushes is not None:
            self.pushes.close()
        self.ledger.close()

    # --- maintenance thread -------------------------------------------------------------

    def _maintain(self) -> None:
        config = self.ledger.config
        due = time.monotonic() + config.renew_interval
        while not self._stop.wait(max(0.0, due - time.monotonic())):
            started = time.monotonic()
            if self.ledger.available:
                takebacks = self.ledger.renew_all()
            else:
                takebacks = self.ledger.recover() or []
            interval = config.renew_interval if self.ledger.available else config.retry_interval
            due = started + interval
            self._deliver(takebacks)

    def _deliver(self, takebacks: list[TakeBack]) -> None:
        for takeback in takebacks:
            try:
                self._take_back(takeback)
            except Exception:
                log.exception("take-back of websocket_id=%s failed", takeback.websocket_id)

    # --- listener thread -----------------------------------------------------------------

    def _listen(self) -> None:
        while not self._stop.is_set():
            pool = self._client.connection_pool
            connection = cast(Any, pool.connection_class(**pool.connection_kwargs))
            try:
                connection.connect()  # a Sentinel-managed one asks the sentinels first
                connection.send_command("SUBSCRIBE", self.ledger.channel)
                sock = _plain_socket(connection) if self._on_loop is not None else None
                if sock is None:
                    self._read(connection)
                else:
                    self._read_on_loop(sock)
            except (redis.RedisError, OSError) as exc:
                log.debug("cluster listener lost redis: %s", exc)
                self._stop.wait(self.ledger.config.retry_interval)
            finally:
                connection.disconnect()

    def _read(self, connection: Any) -> None:
        """Hand on each message of the channel as it is read, until the link stops."""
        while not self._stop.is_set():
            try:
                reply = connection.read_response(
                    timeout=LISTEN_WAIT, disconnect_on_error=False, push_request=True
                )
            except redis.TimeoutError:
                continue  # nothing came (a partial message stays buffered, to be read on)
            if isinstance(reply, list) and len(reply) == 3 and reply[0] in (b"message", "message"):
                self._heard(reply[2])

    def _read_on_loop(self, sock: socket.socket) -> None:
        """Hand ``sock`` to the loop and wait until it gives it back; OSError if Redis went."""
        assert self._on_loop is not None
        reading = _LoopReading(sock)
        self._on_loop(self._attach, reading)
        while not reading.ended.wait(LISTEN_WAIT):
            if self._stop.is_set():
                self._on_loop(self._detach, reading, "")
                reading.ended.wait(1.0)  # the loop lets go of the socket before it is closed
                return
        if reading.unreadable:
            self._on_loop = None  # from now on the thread reads, as over TLS
        if reading.why:
            raise OSError(reading.why)

    def _attach(self, reading: _LoopReading) -> None:
        """Loop: read the subscribed socket whenever it has bytes."""
        if self._stop.is_set():
            reading.ended.set()
            return
        reading.loop = asyncio.get_running_loop()
        reading.sock.setblocking(False)
        reading.loop.add_reader(reading.sock.fileno(), self._readable, reading)

    def _readable(self, reading: _LoopReading) -> None:
        """Loop: read what came, and hand on each whole message now, in order."""
        try:
            data = reading.sock.recv(_READ)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as error:
            self._detach(reading, str(error))
            return
        if not data:
            self._detach(reading, "redis closed the connection")
            return
        try:
            payloads = reading.reader.feed(data)
        except SubscribedError as error:
            log.warning("cluster listener: %s; reading on its thread from now on", error)
            reading.unreadable = True
            self._detach(reading, str(error))
            return
        for payload in payloads:
            try:
                self._heard(payload)
            except Exception:  # a bug of ours: this message is lost, not the listener
                log.exception("a cluster message failed")

    def _detach(self, reading: _LoopReading, why: str) -> None:
        """Loop: stop reading the socket and give it back to the thread (once)."""
        if reading.ended.is_set():
            return
        if reading.loop is not None:
            with contextlib.suppress(ValueError, OSError):
                reading.loop.remove_reader(reading.sock.fileno())
        reading.why = why
        reading.ended.set()

    def _heard(self, data: bytes) -> None:
        if self.pushes is not None and self.pushes.heard(data):
            return
        takeback = parse_message(data)
        if takeback is None:
            log.warning("ignored malformed cluster message %r", data[:200])
            return
        self._deliver([takeback])


class _LoopReading:
    """The subscribed socket while the loop reads it; ``ended`` once the thread has it back."""

    __slots__ = ("ended", "loop", "reader", "sock", "unreadable", "why")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.loop: asyncio.AbstractEventLoop | None = None  # set on the loop, once attached
        self.reader = SubscribedReader()
        self.ended = threading.Event()
        self.why = ""  # why the loop gave it back: "" for a stop
        self.unreadable = False  # bytes the reader could not read: the thread reads from now on


def _plain_socket(connection: Any) -> socket.socket | None:
    """The connected socket of a redis-py ``Connection`` when it is plain TCP; else None.

    redis-py keeps it in ``_sock`` (from 3.0 to 8.x, the versions the
    lock allows): the one private name this module reads. A TLS socket, or
    anything else, is left to the thread.
    """
    if isinstance(connection, redis.SSLConnection):
        return None
    sock = getattr(connection, "_sock", None)
    if not isinstance(sock, socket.socket) or isinstance(sock, ssl.SSLSocket):
        return None
    return sock
