"""How a user supervisor lets go of a connection: close, free the slot, retire the manager.

A mixin of :class:`~actors.user_supervisor.UserSupervisorActor`; every method
runs in that supervisor's turn.
"""

from __future__ import annotations

import itertools
import logging
from typing import Any

import pykka

from actors.children import Child, Children
from actors.mailbox import stop_here, tell_here
from actors.messages import Detach
from actors.runtime import Runtime
from supervisor.codes import CloseCode
from supervisor.context import UserExecutionContext
from supervisor.observer import CleanupReason

__all__ = ["ChildKeeper"]

log = logging.getLogger("actors.user_supervisor")

_SWEEP_MARGIN = 1e-6
"""Seconds a sweep runs early, so float rounding never skips a sweep that would reap."""

_CODE_FOR: dict[CleanupReason, CloseCode] = {
    "timeout": CloseCode.IDLE_TIMEOUT,
    "proactive": CloseCode.IDLE_TIMEOUT,
    "emergency": CloseCode.IDLE_TIMEOUT,
    "evict": CloseCode.EVICTED,
    "supersede": CloseCode.SUPERSEDED,
    "crash": CloseCode.INTERNAL_ERROR,
    "shutdown": CloseCode.GOING_AWAY,
    "close": CloseCode.NORMAL,
}


class ChildKeeper:
    """Closing, freeing and retiring, for a supervisor with ``_rt`` and ``_children``."""

    user_id: str
    _rt: Runtime
    _children: Children

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
        log.info(
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

    _next_sweep: float = float("-inf")
    """No sweep can find anything before this (:meth:`ReapPolicy.next_due`)."""

    def _sweep(self, now: float, trigger: CleanupReason) -> None:
        views = [child.view() for child in self._children.connected()]
        for websocket_id, reason in self._rt.reap.sweep(views, now):
            self._reap(
                self._children.by_id[websocket_id], trigger, now, f"not live: {reason.value}"
            )
        self._next_sweep = self._rt.reap.next_due(
            (child.view() for child in self._children.connected()), now
        )

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
