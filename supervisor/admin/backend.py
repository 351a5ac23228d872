"""What the admin listener serves, and the backend that serves it from a running tree.

Every method of an :class:`AdminBackend` is called on the event loop; the
blocking calls into the tree (snapshots) and into Redis run on the loop's
default executor, and a push comes back from an actor thread (and, from
other nodes, from the cluster link's threads) through
:func:`supervisor.front.bridge.reply_future`.
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import pykka
import redis

from actors.context import validate_id
from actors.errors import TreeNotRunning
from actors.tree import SupervisionTree
from supervisor.admin.metrics import MetricsObserver
from supervisor.admin.readiness import Readiness, Trigger
from supervisor.cluster.ledger import RedisLedger
from supervisor.cluster.push import ClusterPush
from supervisor.cluster.push_tally import PushAnswer, PushTally
from supervisor.errors import BackendUnavailable
from supervisor.front.bridge import reply_future

__all__ = ["AdminBackend", "TreeAdminBackend", "cluster_view"]


class AdminBackend(Protocol):
    """What the admin listener serves; every method is called on the event loop."""

    async def metrics_text(self) -> bytes:
        """The Prometheus text exposition; must be fast."""

    async def health(self) -> tuple[bool, dict[str, Any]]:
        """``(alive, details)``: does the tree answer?"""

    async def readiness(self) -> tuple[bool, list[str]]:
        """``(ready, reasons)``; must be fast."""

    async def state(self) -> dict[str, Any]:
        """The state dump; raises :class:`BackendUnavailable` if it cannot be had."""

    async def push(self, user_id: str, thread_id: str | None, message: Any) -> PushAnswer:
        """Send ``message`` (JSON data) to a user's connections, on every node; what it reached."""

    async def cluster(self) -> dict[str, Any]:
        """Every node's slots from the shared ledger; :class:`BackendUnavailable` without one."""


class TreeAdminBackend:
    """An :class:`AdminBackend` for a running :class:`SupervisionTree`; never blocks the loop."""

    def __init__(
        self,
        tree: SupervisionTree,
        metrics: MetricsObserver,
        readiness: Readiness,
        *,
        timeout: float = 2.0,
        shared_ledger: RedisLedger | None = None,
        clients: Callable[[], Mapping[str, Mapping[str, str]]] | None = None,
        pushes: ClusterPush | None = None,
    ) -> None:
        self.tree = tree
        self.metrics = metrics
        self.readiness_policy = readiness
        self.timeout = timeout
        self.shared_ledger = shared_ledger
        self.clients = clients
        self.pushes = pushes

    async def metrics_text(self) -> bytes:
        return self.metrics.exposition()

    async def health(self) -> tuple[bool, dict[str, Any]]:
        try:
            snapshot = await self.state()
        except BackendUnavailable as error:
            return False, {"status": "unavailable", "error": str(error)}
        users = snapshot["users"]
        managers = sum(len(user.get("managers", [])) for user in users)
        return True, {"status": "ok", "users": len(users), "managers": managers}

    async def readiness(self) -> tuple[bool, list[str]]:
        reasons = [trigger.reason for trigger in self.triggers()]
        return not reasons, reasons

    def triggers(self) -> list[Trigger]:
        """Every readiness trigger that holds now (fast: the tree and Redis are not asked)."""
        ledger = self.shared_ledger
        unavailable = None
        if ledger is not None and not ledger.available:
            unavailable = f"redis ledger unavailable ({ledger.config.on_unavailable})"
        return self.readiness_policy.triggers(
            tree_running=self.tree.running, ledger_unavailable=unavailable
        )

    async def state(self) -> dict[str, Any]:
        """The tree's snapshot, taken on an executor thread (it blocks up to ``timeout``).

        Each connection's client address (``client``, and ``proxy`` when a
        trusted proxy gave it) comes from ``clients``, read on the loop.
        """
        loop = asyncio.get_running_loop()
        addresses = self.clients() if self.clients is not None else {}
        snapshot = functools.partial(self.tree.snapshot, timeout=self.timeout)
        try:
            state: dict[str, Any] = await loop.run_in_executor(None, snapshot)
        except TreeNotRunning as error:
            raise BackendUnavailable(str(error)) from error
        except (pykka.Timeout, pykka.ActorDeadError) as error:
            raise BackendUnavailable(f"the tree did not answer within {self.timeout:g}s") from error
        if addresses:
            for user in state.get("users", ()):
                for manager in user.get("managers", ()):
                    manager.update(addresses.get(manager.get("websocket_id"), {}))
        return state

    async def push(self, user_id: str, thread_id: str | None, message: Any) -> PushAnswer:
        """This node's connections, and with ``pushes`` every other node's, through Redis.

        The local delivery and the route to other nodes run at once; the
        route is sent first (its ``PUSH`` script's round trip overlaps the
        local delivery, which takes longer than the call that starts it).
        The answer waits for the tree's count (up to ``timeout``) and for
        the other nodes' (up to ``[redis] push_timeout``). Raises
        :class:`InvalidIdError` (bad ids, before anything is sent) or
        :class:`BackendUnavailable` (the tree is stopped or did not answer).
        """
        loop = asyncio.get_running_loop()
        validate_id("user_id", user_id)
        if thread_id is not None:
            validate_id("thread_id", thread_id)
        if not self.tree.running:  # nothing goes to other nodes from a stopped node
            raise BackendUnavailable("the supervision tree is not running")
        text = json.dumps(message, separators=(",", ":"), ensure_ascii=False)
        pushes = self.pushes
        routed: asyncio.Future[PushTally] | None = None
        push_id = ""
        if pushes is not None:
            routed, settled = reply_future(loop)
            push_id = pushes.send(user_id, thread_id, text, settled)
        try:
            local: asyncio.Future[int]
            local, reply = reply_future(loop)
            try:
                self.tree.push_nowait(user_id, thread_id, text, reply)
            except TreeNotRunning as error:
                raise BackendUnavailable(str(error)) from error
            try:
                async with asyncio.timeout(self.timeout):
                    count = await local
            except TimeoutError:
                raise BackendUnavailable(
                    f"the tree did not confirm the push within {self.timeout:g}s"
                ) from None
            if pushes is None or routed is None:
                return PushAnswer(count, {self.tree.node_id: count})
            return (await _tally(pushes, push_id, routed)).answer(pushes.node_id, count)
        finally:
            if pushes is not None:
                pushes.give_up(push_id)  # however this ends (a no-op once settled)

    async def cluster(self) -> dict[str, Any]:
        """Every user's slots on every node, from Redis (on an executor thread)."""
        ledger = self.shared_ledger
        if ledger is None:
            raise BackendUnavailable("this node counts slots in memory: no cluster ledger")
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(None, cluster_view, ledger)
        except redis.RedisError as error:
            raise BackendUnavailable(f"redis ledger unavailable: {error}") from error


def cluster_view(ledger: RedisLedger, max_users: int = 1000) -> dict[str, Any]:
    """``{"node_id", "users": [{"user_id", "slots": [...]}]}`` from Redis (blocking)."""
    users = [
        {"user_id": user_id, "slots": ledger.cluster_slots(user_id)}
        for user_id in ledger.cluster_users(max_users)
    ]
    return {"node_id": ledger.node_id, "users": [user for user in users if user["slots"]]}


async def _tally(pushes: ClusterPush, push_id: str, routed: asyncio.Future[PushTally]) -> PushTally:
    """The other nodes' answers, or what came of them by ``[redis] push_timeout``."""
    await asyncio.wait({routed}, timeout=pushes.timeout)
    if not routed.done():
        tally = pushes.give_up(push_id)
        if tally is not None:
            return tally
    return await routed  # settled (maybe as the wait ended: its value is on its way)
