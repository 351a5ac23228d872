"""The quota ledger on Redis: one per-user quota across every node that shares it.

Each call is one Lua script (:mod:`supervisor.cluster.scripts`), so admission
is atomic across nodes and costs one round trip. Every call goes through one
:class:`~supervisor.cluster.calls.ScriptLink`, which keeps them in order:
admissions (:meth:`RedisLedger.begin_acquire`) and releases do not wait for
Redis, the rest do. Beside Redis the node keeps its own book (an
:class:`~actors.policies.ledger.InMemoryLedger`) of the slots its
connections hold. Only the actors write that book, through their
ledger calls, so it is the actors' record: it is what the node renews, what
it registers again after an outage, and what it counts while Redis is away.

Threads: ledger calls run on the user supervisors' threads; renewal and
recovery (:mod:`supervisor.cluster.upkeep`) on the cluster link's maintenance
thread (:mod:`supervisor.cluster.link`); replies on the script link's thread, which only
records them and tells the supervisor that asked. An admission under way
is listed in renewals as reserved, so a renewal never drops the slot that
its answer is about to bring. A Redis failure never raises out of a call: the
ledger marks itself unavailable and :class:`LeasePolicy` decides
(``fail_open``: the node's own count; ``fail_closed``: refuse).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from redis.sentinel import Sentinel

from actors.policies.ledger import AcquireResult, InMemoryLedger, PendingAcquire
from supervisor.cluster import scripts as redis_scripts
from supervisor.cluster.calls import Reply, ScriptLink
from supervisor.cluster.lease import LeasePolicy
from supervisor.cluster.upkeep import LeaseUpkeep, LedgerEvents, NoEvents, user_keys
from supervisor.config.addresses import SENTINEL_SCHEME, parse_sentinel_url
from supervisor.config.schema import RedisConfig

__all__ = ["RedisLedger", "connect"]

log = logging.getLogger(__name__)

_STATUS = {
    b"acquired": AcquireResult.ACQUIRED,
    b"superseded": AcquireResult.SUPERSEDED,
    b"evicted": AcquireResult.EVICTED,
    b"user_full": AcquireResult.USER_FULL,
}


def connect(config: RedisConfig) -> redis.Redis:
    """A client whose every call gives up after ``config.timeout``, with no retries.

    With a ``redis+sentinel://`` URL it is the master's client of a
    :class:`redis.sentinel.Sentinel`: each new connection (the script
    link's, the pool's, the listener's) first asks the sentinels, one after
    the other with the same timeout, which server is the master, so after a
    failover the node reconnects to the promoted replica; a connection still
    open to a demoted master gets ``READONLY``, which redis-py turns into a
    ``ConnectionError``. Retrying is the cluster link's job, never redis-py's.
    """
    timeouts: dict[str, Any] = {
        "socket_timeout": config.timeout,
        "socket_connect_timeout": config.timeout,
    }
    if not config.url.startswith(SENTINEL_SCHEME + "://"):
        return redis.Redis.from_url(
            config.url, retry=Retry(NoBackoff(), 0), health_check_interval=0, **timeouts
        )
    target = parse_sentinel_url(config.url)
    sentinels = Sentinel(
        list(target.sentinels), sentinel_kwargs={**timeouts, "retry": Retry(NoBackoff(), 0)}
    )
    client: redis.Redis = sentinels.master_for(
        target.service,
        db=target.db,
        username=target.username,
        password=target.password,
        retry=Retry(NoBackoff(), 0),
        health_check_interval=0,
        **timeouts,
    )
    return client


class RedisLedger(LeaseUpkeep):
    """The :class:`~actors.policies.ledger.Ledger` of a node in a cluster."""

    shared = True

    def __init__(
        self,
        client: redis.Redis,
        node_id: str,
        config: RedisConfig,
        node_limit: int,
        events: LedgerEvents | None = None,
    ) -> None:
        self.node_id = node_id
        self.config = config
        self.policy = LeasePolicy(config.lease_ttl, config.renew_interval, config.on_unavailable)
        self._client = client
        self._prefix = config.key_prefix
        self._events = events or NoEvents()
        self._book = InMemoryLedger(node_limit)
        self._limits: dict[str, int] = {}
        self._since: dict[tuple[str, str], int] = {}
        self._dirty: set[str] = set()
        self._versions: dict[str, int] = {}
        self._available = True
        self._lock = threading.Lock()
        self._pending: dict[str, dict[str, PendingAcquire]] = {}
        self._reserved = 0
        self._link = ScriptLink(client, redis_scripts.BY_NAME)

    # --- keys -------------------------------------------------------------------------

    def user_keys(self, user_id: str) -> list[str]:
        """The two Redis keys of a user: its leases and its holders."""
        return user_keys(self._prefix, user_id)

    @property
    def channel(self) -> str:
        """The pub/sub channel on which other nodes reach this one."""
        return f"{self._prefix}:node:{self.node_id}"

    @property
    def available(self) -> bool:
        """False from a failed Redis call until :meth:`recover` succeeds."""
        return self._available

    # --- the Ledger interface (user supervisors' threads) ------------------------------------

    def acquire(
        self, user_id: str, key: str, holder: str, limit: int, evict: bool = False
    ) -> AcquireResult:
        """:meth:`begin_acquire`, then wait for the answer (for callers that may block)."""
        answered = threading.Event()
        answer = self.begin_acquire(
            user_id, key, holder, limit, evict=evict, notify=lambda _: answered.set()
        )
        while isinstance(answer, PendingAcquire):
            if not answered.wait(self.config.timeout * 2 + 1.0):  # the link always answers
                self.cancel_acquire(answer)
                return AcquireResult.UNAVAILABLE
            answered.clear()
            answer = self.end_acquire(answer)
        return answer

    def begin_acquire(
        self,
        user_id: str,
        key: str,
        holder: str,
        limit: int,
        *,
        evict: bool,
        notify: Callable[[PendingAcquire], None],
    ) -> AcquireResult | PendingAcquire:
        self._limits[user_id] = limit
        return self._ask(PendingAcquire(user_id, key, holder, limit, evict=evict, notify=notify))

    def end_acquire(self, pending: PendingAcquire) -> AcquireResult | PendingAcquire:
        reply = pending.reply
        if isinstance(reply, redis.RedisError):  # already marked unavailable
            self._unreserve(pending)
            result = self._acquire_alone(
                pending.user_id, pending.key, pending.holder, pending.limit
            )
            if result is not None:
                return result
            return self._ask(pending) if pending.attempts < 2 else AcquireResult.UNAVAILABLE
        status, now = reply
        result = _STATUS[status]
        with self._lock:  # entered before unreserved: a renewal always lists the key
            if result is not AcquireResult.USER_FULL:
                self._enter(pending.user_id, pending.key, pending.holder, int(now))
            self._unreserve_locked(pending)
        return result

    def cancel_acquire(self, pending: PendingAcquire) -> None:
        with pending.lock:
            pending.cancelled = True
            answered = pending.answered
        self._unreserve(pending)
        if answered:
            self._undo(pending)

    def transfer(self, user_id: str, key: str, old_holder: str, new_holder: str) -> bool:
        if not self._book.transfer(user_id, key, old_holder, new_holder):
            return False
        self._changed(user_id)
        self._since[(user_id, key)] = _wall_ms()
        limit = self._limits.get(user_id, 1)
        args = (key, self.node_id, old_holder, new_holder, limit, self.policy.ttl_ms)
        moved = self._write(
            "transfer", "TRANSFER", user_id, *args, f"{self._prefix}:node:", user_id
        )
        if moved == 0:  # the old slot was gone (evicted, lapsed) and no room is left
            self._book.release(user_id, key, new_holder)
            self._since.pop((user_id, key), None)
            self._changed(user_id)
            return False
        return True

    def release(self, user_id: str, key: str, holder: str) -> bool:
        if not self._book.release(user_id, key, holder):
            return False
        self._changed(user_id)
        self._since.pop((user_id, key), None)
        self._post("release", "RELEASE", user_id, key, self.node_id, holder)
        return True

    def renew(self, user_id: str, key: str, holder: str) -> bool:
        if not self._book.renew(user_id, key, holder):
            return False
        if self._available:
            try:
                self._sync([user_id], "renew")  # every slot of the user: the script drops unlisted
            except redis.RedisError as exc:
                self._lost("renew", exc)
        return True

    def release_user(self, user_id: str) -> int:
        with self._lock:
            pending = list(self._pending.get(user_id, {}).values())
        for one in pending:  # its supervisor is gone: nobody will take the answer
            self.cancel_acquire(one)
        for key in self._book.holders(user_id):
            self._since.pop((user_id, key), None)
        freed = self._book.release_user(user_id)
        self._changed(user_id)
        self._post("release_user", "RENEW", user_id, *self._renew_args(user_id, "resync"))
        return freed

    def usage(self, user_id: str) -> int:
        if self._available:
            try:
                return int(self._link.call("USAGE", self.user_keys(user_id)[:1]))
            except redis.RedisError as exc:
                self._lost("usage", exc)
        return self._book.usage(user_id)

    def total(self) -> int:
        return self._book.total()

    def holders(self, user_id: str) -> dict[str, str]:
        return self._book.holders(user_id)

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until Redis has answered every call made so far; False on timeout."""
        return self._link.flush(timeout)

    def close(self) -> None:
        """Send what is still queued (the releases of a stopping tree), then close the link."""
        self._link.close()

    # --- inside ---------------------------------------------------------------------------------

    def _run(self, script: str, user_id: str, *args: Any) -> Any:
        return self._link.call(script, self.user_keys(user_id), args)

    def _post(self, operation: str, script: str, user_id: str, *args: Any) -> None:
        """Send a write whose outcome the book already holds, without waiting for it.

        Offline, or if it fails, the user is marked for the resync after the outage.
        """
        with self._lock:
            offline = not self._available
            if offline:
                self._dirty.add(user_id)
        if offline:
            return

        def done(reply: Reply) -> None:
            if isinstance(reply, redis.RedisError):
                self._lost(operation, reply)
                with self._lock:
                    self._dirty.add(user_id)

        self._link.submit(script, self.user_keys(user_id), args, done)

    def _ask(self, pending: PendingAcquire) -> AcquireResult | PendingAcquire:
        """Send one admission script (the key is reserved until its answer is taken)."""
        pending.attempts += 1
        pending.reply, pending.answered = None, False
        user_id, key = pending.user_id, pending.key
        with self._lock:
            if self._book.total() + self._reserved >= self._book.node_limit:
                return AcquireResult.NODE_FULL
            shared = self._available
            if shared:
                self._reserved += 1
                self._pending.setdefault(user_id, {})[key] = pending
        if shared:
            args = (key, self.node_id, pending.holder, pending.limit, self.policy.ttl_ms)
            tail = (int(pending.evict), f"{self._prefix}:node:", user_id)
            keys = self.user_keys(user_id)
            self._link.submit("ACQUIRE", keys, (*args, *tail), lambda r: self._answer(pending, r))
            return pending
        result = self._acquire_alone(user_id, key, pending.holder, pending.limit)
        if result is not None:
            return result
        return self._ask(pending) if pending.attempts < 2 else AcquireResult.UNAVAILABLE

    def _answer(self, pending: PendingAcquire, reply: Reply) -> None:
        """The link's thread: record the answer, then tell whoever asked (or undo it)."""
        if isinstance(reply, redis.RedisError):
            self._lost("acquire", reply)
        with pending.lock:
            pending.reply, pending.answered = reply, True
            cancelled = pending.cancelled
        if cancelled:
            self._undo(pending)
        else:
            pending.notify(pending)

    def _undo(self, pending: PendingAcquire) -> None:
        """Release the slot that a cancelled admission took, if it took one."""
        reply = pending.reply
        if (
            not isinstance(reply, redis.RedisError)
            and _STATUS[reply[0]] is not AcquireResult.USER_FULL
        ):
            self._post(
                "release", "RELEASE", pending.user_id, pending.key, self.node_id, pending.holder
            )

    def _unreserve(self, pending: PendingAcquire) -> None:
        with self._lock:
            self._unreserve_locked(pending)

    def _unreserve_locked(self, pending: PendingAcquire) -> None:
        waiting = self._pending.get(pending.user_id)
        if waiting is not None and waiting.get(pending.key) is pending:
            del waiting[pending.key]
            if not waiting:
                del self._pending[pending.user_id]
            self._reserved -= 1

    def _write(self, operation: str, script: str, user_id: str, *args: Any) -> Any:
        """Run a write whose outcome the book already holds; offline, mark the user for resync.

        Returns the script's answer, or None when Redis could not be reached.
        """
        for _ in range(2):  # twice at most: Redis may come back while we decide
            if self._available:
                try:
                    return self._run(script, user_id, *args)
                except redis.RedisError as exc:
                    self._lost(operation, exc)
            with self._lock:
                if not self._available:
                    self._dirty.add(user_id)
                    return None
        return None

    def _acquire_alone(
        self, user_id: str, key: str, holder: str, limit: int
    ) -> AcquireResult | None:
        """Admission while Redis is away, by the policy; None if Redis is back meanwhile."""
        if not self.policy.admits_while_down:
            return AcquireResult.UNAVAILABLE
        with self._lock:
            if self._available:
                return None
            result = self._book.acquire(user_id, key, holder, limit)
            if result is AcquireResult.ACQUIRED:
                self._changed(user_id)
                self._since[(user_id, key)] = _wall_ms()
                self._dirty.add(user_id)
        return result

    def _enter(self, user_id: str, key: str, holder: str, acquired_ms: int) -> None:
        old = self._book.holders(user_id).get(key)
        if old is not None:  # a stale entry of this node for the key: Redis has moved on
            self._book.release(user_id, key, old)
        self._book.acquire(user_id, key, holder, limit=1 << 30)
        self._changed(user_id)
        self._since[(user_id, key)] = acquired_ms

    def _changed(self, user_id: str) -> None:
        """Count a change of the user's book (only the user's supervisor thread writes it)."""
        self._versions[user_id] = self._versions.get(user_id, 0) + 1

    def _lost(self, operation: str, exc: Exception) -> None:
        self._events.ledger_error(operation)
        with self._lock:
            was, self._available = self._available, False
        if was:
            self._events.ledger_available(False)
            log.error(
                "redis ledger unavailable (%s failed: %s); policy %s",
                operation,
                exc,
                self.config.on_unavailable,
            )


def _wall_ms() -> int:
    return int(time.time() * 1000)
