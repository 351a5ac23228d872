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
  It reads its own connection (made as the script links make theirs, so
  through the sentinels with a Sentinel URL), each read waiting at most
  :data:`LISTEN_WAIT` so that it sees a stop; a message is handed on as
  soon as it is read, without redis-py's ``PubSub`` layers (a readiness
  poll, a retry wrapper and a message dict per message). After a Redis
  error it connects and subscribes again every ``retry_interval``.

Each :class:`TakeBack` goes to ``take_back`` (the tree closes the connection
with 4001 or 4002). A message lost while the listener reconnects is made up
for by the next renewal, which reports the slots this node no longer holds.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, cast

import redis

from actors.messages import TakeBack
from actors.observer import CleanupReason
from supervisor.cluster.ledger import RedisLedger
from supervisor.cluster.push import ClusterPush

__all__ = ["LISTEN_WAIT", "ClusterLink", "parse_message"]

log = logging.getLogger(__name__)

LISTEN_WAIT = 0.2
"""The longest one read of the listener waits for a message (seconds): how soon it sees a stop."""

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

    def start(self) -> ClusterLink:
        """Probe Redis (a node may start while it is down) and start both threads."""
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
                self._read(connection)
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

    def _heard(self, data: bytes) -> None:
        if self.pushes is not None and self.pushes.heard(data):
            return
        takeback = parse_message(data)
        if takeback is None:
            log.warning("ignored malformed cluster message %r", data[:200])
            return
        self._deliver([takeback])
