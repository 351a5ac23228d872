"""Leases of a Redis ledger: renewal, recovery after an outage, and the cluster's view.

A mixin of :class:`~supervisor.cluster.ledger.RedisLedger`. :meth:`LeaseUpkeep.renew_all`,
:meth:`~LeaseUpkeep.recover` and :meth:`~LeaseUpkeep.probe` run on the cluster
link's maintenance thread (:mod:`supervisor.cluster.link`); the ``cluster_*`` reads
on the admin server's threads. :func:`drop_node` frees, at once, every slot of
a node that is gone (a worker of ``serve --workers`` that died), on the
thread of whoever calls it. A renewal sends, for each user, every slot the
node's book lists (and the keys whose admission is under way, as reserved):
Redis extends those leases, registers a lost one again if there is room, and
drops this node's slots that are no longer listed. A user whose book changed
while the renewal ran is renewed again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol

import attrs
import redis

from actors.messages import TakeBack
from actors.observer import CleanupReason
from actors.policies.ledger import InMemoryLedger, PendingAcquire
from supervisor.cluster import scripts as redis_scripts
from supervisor.cluster.calls import Reply, ScriptLink
from supervisor.cluster.lease import LeasePolicy, SlotRecord, beyond_quota
from supervisor.config.schema import RedisConfig

__all__ = [
    "LeaseUpkeep",
    "LedgerEvents",
    "NoEvents",
    "drop_node",
    "parse_record",
    "parse_records",
    "user_keys",
]

log = logging.getLogger("supervisor.cluster.ledger")

_MAX_RESYNC_ROUNDS = 5
_DROP_BATCH = 500  # users per pipelined round trip


def user_keys(prefix: str, user_id: str) -> list[str]:
    """The two Redis keys of a user: its leases and its holders."""
    base = prefix + ":{" + user_id + "}"  # a hash tag: one Redis Cluster slot
    return [base + ":slots", base + ":holders"]


def drop_node(
    client: redis.Redis, config: RedisConfig, node_id: str, users: Iterable[str] | None
) -> int:
    """Free every slot ``node_id`` holds, for ``users`` (None: every user in Redis); how many.

    Blocking, and raises ``redis.RedisError``. For a node that is gone for
    good: its slots would otherwise last until their leases run out.
    Pipelined, :data:`_DROP_BATCH` users per round trip; without ``users``
    it scans the keys of every user.
    """
    if users is None:
        pattern = config.key_prefix + ":{*}:holders"
        found = (
            key.decode()[len(config.key_prefix) + 2 : -len("}:holders")]
            for key in client.scan_iter(match=pattern, count=1000)
        )
        users = found
    script = client.register_script(redis_scripts.DROP_NODE)
    dropped = 0
    batch: list[str] = []
    for user_id in users:
        batch.append(user_id)
        if len(batch) == _DROP_BATCH:
            dropped += _drop_batch(client, script, config.key_prefix, node_id, batch)
            batch = []
    if batch:
        dropped += _drop_batch(client, script, config.key_prefix, node_id, batch)
    return dropped


def _drop_batch(
    client: redis.Redis, script: Any, prefix: str, node_id: str, users: Sequence[str]
) -> int:
    pipe = client.pipeline(transaction=False)
    for user_id in users:
        script(keys=user_keys(prefix, user_id), args=[node_id], client=pipe)
    return sum(int(count) for count in pipe.execute())


def parse_record(key: str, record: bytes | str) -> SlotRecord:
    """A holder record from Redis (``node TAB websocket_id TAB acquired_ms``); ValueError if not."""
    text = record.decode() if isinstance(record, bytes) else record
    node, websocket_id, since = text.split("\t")
    return SlotRecord(key, node, websocket_id, int(since))


def parse_records(flat: list[Any]) -> list[SlotRecord]:
    """The records of a flat ``[key, record, ...]`` reply; a malformed one is logged and skipped.

    A record nobody of ours wrote (a hand edit, another program on the same
    prefix) must not stop the lease renewal that reads it.
    """
    records = []
    for i in range(0, len(flat), 2):
        key = flat[i].decode() if isinstance(flat[i], bytes) else str(flat[i])
        if not flat[i + 1]:
            continue
        try:
            records.append(parse_record(key, flat[i + 1]))
        except (ValueError, UnicodeDecodeError):
            log.warning("skipped a malformed slot record in redis: key=%s", key)
    return records


class LedgerEvents(Protocol):
    """What the ledger reports (the daemon's metrics implement it)."""

    def ledger_available(self, available: bool) -> None:
        """The ledger became reachable (True) or unreachable (False)."""

    def ledger_error(self, operation: str) -> None:
        """One Redis call failed or timed out."""


class NoEvents:
    """Reports nothing."""

    def ledger_available(self, available: bool) -> None:
        pass

    def ledger_error(self, operation: str) -> None:
        pass


class LeaseUpkeep:
    """Renewal and recovery, for a ledger with a book, a link and a Redis client."""

    node_id: str
    config: RedisConfig
    policy: LeasePolicy
    _client: redis.Redis
    _prefix: str
    _book: InMemoryLedger
    _limits: dict[str, int]
    _since: dict[tuple[str, str], int]
    _dirty: set[str]
    _versions: dict[str, int]
    _available: bool
    _lock: threading.Lock
    _pending: dict[str, dict[str, PendingAcquire]]
    _link: ScriptLink
    _events: LedgerEvents

    def user_keys(self, user_id: str) -> list[str]:
        raise NotImplementedError

    def _lost(self, operation: str, exc: Exception) -> None:
        raise NotImplementedError

    def probe(self) -> bool:
        """Ping Redis; a failure marks the ledger unavailable (until :meth:`recover`)."""
        try:
            self._client.ping()
        except redis.RedisError as exc:
            self._lost("ping", exc)
            return False
        return True

    def renew_all(self) -> list[TakeBack]:
        """Extend every lease this node holds; the connections that lost theirs come back.

        A node holding no slot pings Redis instead (a renewal of nobody sends
        nothing), so that every node, idle or not, notices within one
        renewal that Redis is gone.
        """
        if not self._available:
            return []
        users = self._book_users()
        if not users:
            self.probe()
            return []
        try:
            return self._sync(users, "renew")
        except redis.RedisError as exc:
            self._lost("renew", exc)
            return []

    def recover(self) -> list[TakeBack] | None:
        """Try Redis again; on success register this node's slots anew (None: still down)."""
        try:
            self._client.ping()
            takebacks: list[TakeBack] = []
            for _ in range(_MAX_RESYNC_ROUNDS):
                with self._lock:
                    users, self._dirty = self._dirty | set(self._book_users()), set()
                takebacks.extend(self._sync(sorted(users), "resync"))
                with self._lock:
                    if not self._dirty:
                        self._available = True
                        break
        except redis.RedisError as exc:
            log.debug("redis still unavailable: %s", exc)
            return None
        if not self._available:
            return None
        self._events.ledger_available(True)
        log.warning("redis ledger available again; node %s re-registered its slots", self.node_id)
        return takebacks

    def cluster_slots(self, user_id: str) -> list[dict[str, Any]]:
        """The user's live slots on every node, from Redis (raises ``redis.RedisError``)."""
        now, flat, live = self._link.call("HOLDERS", self.user_keys(user_id))
        expiries = {live[i].decode(): float(live[i + 1]) for i in range(0, len(live), 2)}
        slots = [
            {
                **attrs.asdict(record),
                "lease_left": round((expiries[record.key] - int(now)) / 1000, 3),
            }
            for record in parse_records(flat)
        ]
        return sorted(slots, key=lambda slot: (slot["acquired_ms"], slot["key"]))

    def cluster_users(self, limit: int = 1000) -> list[str]:
        """User ids with slots in Redis, on any node (raises ``redis.RedisError``)."""
        pattern = self._prefix + ":{*}:slots"
        users = []
        for raw in self._client.scan_iter(match=pattern, count=500):
            name = raw.decode()
            users.append(name[len(self._prefix) + 2 : -len("}:slots")])
            if len(users) >= limit:
                break
        return sorted(users)

    def _book_users(self) -> list[str]:
        return self._book.users()

    def _renew_args(self, user_id: str, mode: str) -> list[Any]:
        limit = self._limits.get(user_id, 1)
        return [self.node_id, self.policy.ttl_ms, limit, mode]

    def _slot_args(self, user_id: str) -> list[Any]:
        """The user's slots on this node; a key reserved for an admission as ``key, "", 0``."""
        # the reserved keys first: a key leaves them only after it has entered the book
        reserved = list(self._pending.get(user_id, ()))
        held = self._book.holders(user_id)
        args: list[Any] = []
        for key, holder in held.items():
            args += [key, holder, self._since.get((user_id, key), 0)]
        for key in reserved:
            if key not in held:
                args += [key, "", 0]
        return args

    def _sync(self, users: Sequence[str], mode: str) -> list[TakeBack]:
        """Renew (or resync) ``users``; again for any whose book changed meanwhile."""
        takebacks: list[TakeBack] = []
        for _ in range(_MAX_RESYNC_ROUNDS):
            before = {user_id: self._versions.get(user_id, 0) for user_id in users}
            takebacks.extend(self._sync_once(users, mode))
            users = [u for u in users if self._versions.get(u, 0) != before[u]]
            if not users:
                break
        return takebacks

    def _sync_once(self, users: Sequence[str], mode: str) -> list[TakeBack]:
        """One ``RENEW`` per user, on the script link, after every admission already sent.

        The users' slots are read and their renewals queued under the lock
        that an admission takes to reserve its key: an admission reserved
        before is listed (reserved), one reserved after is sent after the
        renewal, on the same connection. Were the renewal sent on another
        connection, an admission could overtake it, and the renewal, not
        listing the new slot, would drop it, leaving the user room for one
        more connection on another node.
        """
        replies: list[Reply] = [None] * len(users)
        answered = threading.Semaphore(0)

        def keep(index: int) -> Callable[[Reply], None]:
            def answer(reply: Reply) -> None:
                replies[index] = reply
                answered.release()

            return answer

        with self._lock:
            for index, user_id in enumerate(users):
                args = self._renew_args(user_id, mode) + self._slot_args(user_id)
                self._link.submit("RENEW", self.user_keys(user_id), args, keep(index))
        deadline = time.monotonic() + self.config.timeout * 2 + 1.0  # the link always answers
        for _ in users:
            if not answered.acquire(timeout=max(0.0, deadline - time.monotonic())):
                raise redis.TimeoutError("no answer to a renewal in time")
        for reply in replies:
            if isinstance(reply, redis.RedisError):
                raise reply
        takebacks: list[TakeBack] = []
        for user_id, (superseded, expired, records) in zip(users, replies, strict=True):
            takebacks.extend(self._takebacks(user_id, superseded, expired, records))
        return takebacks

    def _takebacks(
        self, user_id: str, superseded: Iterable[bytes], expired: Iterable[bytes], flat: list[bytes]
    ) -> list[TakeBack]:
        mine = self._book.holders(user_id)
        found = []
        taken: list[tuple[bytes, CleanupReason, str]] = [
            *((k, "supersede", "the thread connected on another node") for k in superseded),
            *((k, "evict", "lease lost, no room left") for k in expired),
        ]
        for raw, reason, why in taken:
            websocket_id = mine.get(raw.decode())
            if websocket_id is not None:
                found.append(TakeBack(user_id, websocket_id, reason, why))
        records = parse_records(flat)
        for record in beyond_quota(records, self._limits.get(user_id, len(records))):
            if record.node_id == self.node_id and mine.get(record.key) == record.websocket_id:
                found.append(TakeBack(user_id, record.websocket_id, "evict", "over quota"))
        return found
