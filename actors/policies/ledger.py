"""Who holds which slot: the quota ledger interface and its in-memory implementation.

A slot is named by an isolation key and held by one connection (its
websocket id). The user supervisor is the only writer for its user, so the
ledger only has to make each call atomic; a shared store (Redis) can take the
in-memory ledger's place without the actors changing.
"""

from __future__ import annotations

import enum
import threading
from collections.abc import Callable
from typing import Any, Protocol

__all__ = ["AcquireResult", "InMemoryLedger", "Ledger", "PendingAcquire"]


class AcquireResult(enum.Enum):
    """The answer of :meth:`Ledger.acquire`."""

    ACQUIRED = "acquired"
    HELD = "held"
    """The key is already held (by another connection): supersede or refuse."""
    USER_FULL = "user_full"
    NODE_FULL = "node_full"
    SUPERSEDED = "superseded"
    """A shared ledger gave the key's slot to this holder and told the node that
    held it (another node) to close its connection with 4001."""
    EVICTED = "evicted"
    """A shared ledger freed the user's oldest slot (another node's connection,
    closed there with 4002) to make room, as ``evict`` asked."""
    UNAVAILABLE = "unavailable"
    """A shared ledger could not be reached and its policy refuses (fail_closed)."""


class PendingAcquire:
    """An admission that a shared ledger answers later, off the caller's thread.

    :meth:`Ledger.begin_acquire` returns it; the ledger calls ``notify`` with
    it (on the ledger's own thread) once :attr:`reply` is in, and the
    caller then passes it to :meth:`Ledger.end_acquire` on its own thread.
    The caller treats it as opaque.
    """

    def __init__(
        self,
        user_id: str,
        key: str,
        holder: str,
        limit: int,
        *,
        evict: bool,
        notify: Callable[[PendingAcquire], None],
    ) -> None:
        self.user_id, self.key, self.holder = user_id, key, holder
        self.limit, self.evict = limit, evict
        self.notify = notify
        self.attempts = 0
        self.reply: Any = None
        self.answered = False
        self.cancelled = False
        self.lock = threading.Lock()


class Ledger(Protocol):
    """The quota's book of slots; every method is atomic and thread-safe."""

    shared: bool
    """True when several nodes share the book: a call then waits a network round trip."""

    def acquire(
        self, user_id: str, key: str, holder: str, limit: int, evict: bool = False
    ) -> AcquireResult:
        """Take a slot for ``key`` if the user holds fewer than ``limit``.

        ``evict`` lets a shared ledger free the user's oldest slot held on
        another node when the user is full; a node-local ledger ignores it,
        since the supervisor evicts its own connections before asking.
        """
        ...

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
        """:meth:`acquire` without waiting: the result, or a :class:`PendingAcquire`.

        A node-local ledger answers at once. A shared one sends the request
        and returns; ``notify`` is called with the pending acquisition when
        its answer is in. Until then the key is reserved on this node.
        """
        ...

    def end_acquire(self, pending: PendingAcquire) -> AcquireResult | PendingAcquire:
        """The result of an answered acquisition (on the caller's thread).

        It may be pending again: asked once more because the store came
        back while the first answer was a failure.
        """
        ...

    def cancel_acquire(self, pending: PendingAcquire) -> None:
        """Give up on a pending acquisition: a slot it took is released."""
        ...

    def transfer(self, user_id: str, key: str, old_holder: str, new_holder: str) -> bool:
        """Hand ``key``'s slot from one connection to another; False if not held by ``old``."""
        ...

    def release(self, user_id: str, key: str, holder: str) -> bool:
        """Free ``key``'s slot if ``holder`` holds it; False otherwise (a mismatch)."""
        ...

    def renew(self, user_id: str, key: str, holder: str) -> bool:
        """Extend ``key``'s lease; False if ``holder`` does not hold it."""
        ...

    def release_user(self, user_id: str) -> int:
        """Free every slot of a user; return how many were held."""
        ...

    def usage(self, user_id: str) -> int:
        """Slots the user holds, on every node that shares this ledger."""
        ...

    def total(self) -> int:
        """Slots held on this node, all users together."""
        ...

    def holders(self, user_id: str) -> dict[str, str]:
        """The user's slots on this node: isolation key to holding websocket id."""
        ...


class InMemoryLedger:
    """The ledger of one process, with a node-wide cap on slots."""

    shared = False

    def __init__(self, node_limit: int) -> None:
        self.node_limit = node_limit
        self._slots: dict[str, dict[str, str]] = {}
        self._total = 0
        self._lock = threading.Lock()

    def acquire(
        self, user_id: str, key: str, holder: str, limit: int, evict: bool = False
    ) -> AcquireResult:
        with self._lock:
            slots = self._slots.get(user_id, {})
            if key in slots:
                return AcquireResult.HELD
            if len(slots) >= limit:
                return AcquireResult.USER_FULL
            if self._total >= self.node_limit:
                return AcquireResult.NODE_FULL
            self._slots[user_id] = slots
            slots[key] = holder
            self._total += 1
            return AcquireResult.ACQUIRED

    def begin_acquire(
        self,
        user_id: str,
        key: str,
        holder: str,
        limit: int,
        *,
        evict: bool,
        notify: Callable[[PendingAcquire], None],
    ) -> AcquireResult:
        return self.acquire(user_id, key, holder, limit, evict)

    def end_acquire(self, pending: PendingAcquire) -> AcquireResult:
        raise TypeError("an in-memory ledger never leaves an acquisition pending")

    def cancel_acquire(self, pending: PendingAcquire) -> None:
        raise TypeError("an in-memory ledger never leaves an acquisition pending")

    def transfer(self, user_id: str, key: str, old_holder: str, new_holder: str) -> bool:
        with self._lock:
            slots = self._slots.get(user_id, {})
            if slots.get(key) != old_holder:
                return False
            slots[key] = new_holder
            return True

    def release(self, user_id: str, key: str, holder: str) -> bool:
        with self._lock:
            slots = self._slots.get(user_id, {})
            if slots.get(key) != holder:
                return False
            del slots[key]
            self._total -= 1
            if not slots:
                del self._slots[user_id]
            return True

    def renew(self, user_id: str, key: str, holder: str) -> bool:
        with self._lock:
            return self._slots.get(user_id, {}).get(key) == holder

    def release_user(self, user_id: str) -> int:
        with self._lock:
            freed = len(self._slots.pop(user_id, {}))
            self._total -= freed
            return freed

    def usage(self, user_id: str) -> int:
        with self._lock:
            return len(self._slots.get(user_id, {}))

    def total(self) -> int:
        with self._lock:
            return self._total

    def holders(self, user_id: str) -> dict[str, str]:
        with self._lock:
            return dict(self._slots.get(user_id, {}))

    def users(self) -> list[str]:
        """The users holding one slot or more, sorted."""
        with self._lock:
            return sorted(self._slots)
