"""How a user supervisor lets go of a connection: close, free the slot, retire the manager.

The first layer of :class:`~actors.user.actor.UserSupervisorActor`, which
builds on it (:class:`~actors.user.admission.Admitter` in between): it owns
the state every layer shares, the user's id, the tree's runtime and the
children. Every method runs in the supervisor's turn.
"""

from __future__ import annotations

import itertools
import logging
from typing import Any

import pykka

from actors._runtime.mailbox import stop_here, tell_here
from actors.codes import ServerCloseCode
from actors.context import UserExecutionContext
from actors.messages import Detach
from actors.observer import CleanupReason
from actors.policies.reaping import EmergencyCleanup
from actors.routing import RoutingActor
from actors.runtime import Runtime
from actors.user.children import Child, Children

__all__ = ["ChildKeeper"]

log = logging.getLogger("actors.user")

_SWEEP_MARGIN = 1e-6
"""Seconds a sweep runs early, so float rounding never skips a sweep that would reap."""

_CODE_FOR: dict[CleanupReason, ServerCloseCode] = {
    "timeout": ServerCloseCode.IDLE_TIMEOUT,
    "proactive": ServerCloseCode.IDLE_TIMEOUT,
    "emergency": ServerCloseCode.IDLE_TIMEOUT,
    "evict": ServerCloseCode.EVICTED,
    "supersede": ServerCloseCode.SUPERSEDED,
    "crash": ServerCloseCode.INTERNAL_ERROR,
    "shutdown": ServerCloseCode.GOING_AWAY,
    "close": ServerCloseCode.NORMAL,
}


class ChildKeeper(RoutingActor):
    """Closing, freeing and retiring one user's connections; the base of the user supervisor.

    ``__init__`` runs on the thread that starts the supervisor (the root's turn).
    """

    def __init__(self, user_id: str, runtime: Runtime) -> None:
        super().__init__(runtime.system_dispatcher)
        self.user_id = user_id
        self._rt = runtime
        self._children = Children()
        self._next_sweep = float("-inf")
        """No sweep can find anything before this (:meth:`ReapPolicy.next_due`)."""
        self._emergency = EmergencyCleanup()
        """The emergency cleanup under way, timed until the last connection it reaped is let go."""

    def _reap(self, child: Child, reason: CleanupReason, now: float, why: str = "") -> None:
        """Close ``child``'s connection for ``reason`` and free its slot now."""
        if child.state == "closing":
            return
        code = _CODE_FOR[reason]
        try:
            child.port.close(int(code), why or reason)
        except Exception:
            log.exception("port close failed websocket_id=%s", child.context.websocket_id)
        if child.holds_slot:
            self._free_slot(child, now)
        self._children.mark_closing(child, now)
        child.close_reason = reason
        log.debug(  # the connection's access line (INFO, at its end) has the close code
            "reaping user_id=%s isolation_key=%s websocket_id=%s reason=%s code=%d",
            self.user_id,
            child.context.isolation_key,
            child.context.websocket_id,
            reason,
            code,
        )

    def _free_slot(self, child: Child, detected_at: float) -> None:
        ctx = child.context
        if not self._rt.ledger.release(self.user_id, ctx.isolation_key, ctx.websocket_id):
            self._mismatch("release", ctx)
        self._children.drop_key(child)
        child.holds_slot = False
        latency = self._rt.clock.monotonic() - detected_at
        self._rt.observer.release_latency(max(0.0, latency))

    def _finish(self, child: Child, reason: CleanupReason, result: str, started: float) -> None:
        self._children.remove(child)
        now = self._rt.clock.monotonic()
        self._rt.observer.cleanup(reason, result, max(0.0, now - started))
        self._emergency_ended(self._emergency.let_go(child.context.websocket_id, now))
        if child.manager is not None:
            self._retire(child.manager, now)

    def _retire(self, manager: pykka.ActorRef[Any], now: float) -> None:
        if self._rt.pool.has_room(len(self._children.pool), len(self._children.detaching)):
            if tell_here(manager, Detach()):  # an idle manager's answer comes in this turn
                self._children.detaching[manager.actor_urn] = (manager, now)
        else:
            self._stop_manager(manager, now)

    def _stop_manager(self, manager: pykka.ActorRef[Any], now: float) -> None:
        if manager.is_alive():
            self._children.stopping[manager.actor_urn] = (manager, now)
            stop_here(manager)

    def _mismatch(self, operation: str, ctx: UserExecutionContext) -> None:
        self._rt.observer.thread_id_mismatch()
        log.error(
            "thread_id mismatch on %s user_id=%s isolation_key=%s websocket_id=%s",
            operation,
            self.user_id,
            ctx.isolation_key,
            ctx.websocket_id,
        )

    def _abandon_close(self, child: Child, now: float) -> None:
        assert child.closing_since is not None
        self._rt.observer.abandoned()
        log.warning(
            "abandoned close websocket_id=%s isolation_key=%s after %.1fs",
            child.context.websocket_id,
            child.context.isolation_key,
            now - child.closing_since,
        )
        manager, child.manager = child.manager, None
        self._finish(child, child.close_reason or "close", "abandoned", child.closing_since)
        if manager is not None:
            self._stop_manager(manager, now)

    def _sweep(self, now: float, trigger: CleanupReason) -> list[str]:
        """Reap every connection that is no longer live; their websocket ids."""
        views = [child.view() for child in self._children.connected()]
        found = self._rt.reap.sweep(views, now)
        for websocket_id, reason in found:
            self._reap(
                self._children.by_id[websocket_id], trigger, now, f"not live: {reason.value}"
            )
        self._next_sweep = self._rt.reap.next_due(
            (child.view() for child in self._children.connected()), now
        )
        return [websocket_id for websocket_id, _ in found]

    def _emergency_began(self, started_at: float | None, reaped: list[str], now: float) -> None:
        """An emergency cleanup (asked at ``started_at``) reaped ``reaped``: time it to its end."""
        self._emergency.begin(now if started_at is None else started_at, reaped)
        self._emergency_ended(self._emergency.settle(now))

    def _emergency_ended(self, seconds: float | None) -> None:
        if seconds is None:
            return
        self._rt.observer.emergency_cleanup(seconds)
        log.info("emergency cleanup of user_id=%s done in %.3fs", self.user_id, seconds)

    def _wake_at(self) -> float:
        """The earliest time a tick can find work here (the root ticks from then on)."""
        reap, children = self._rt.reap, self._children
        due = self._next_sweep - _SWEEP_MARGIN
        for child in children.closing():
            assert child.closing_since is not None
            due = min(due, reap.overdue_at(child.closing_since))
        for _, since in itertools.chain(children.detaching.values(), children.stopping.values()):
            due = min(due, reap.overdue_at(since))
        if children.pool:
            due = min(due, self._rt.pool.expires_at(children.pool[0][1]))
        return due

    def _sweep_if_due(self, now: float, trigger: CleanupReason) -> None:
        """Sweep, unless no child could be found not live yet (every tick calls this)."""
        if now >= self._next_sweep - _SWEEP_MARGIN:
            self._sweep(now, trigger)
