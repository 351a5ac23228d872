"""How a user supervisor admits a connection: decide, take a slot, start its manager.

The second layer of :class:`~actors.user.actor.UserSupervisorActor`, on
:class:`~actors.user.keeper.ChildKeeper`; every method runs in that
supervisor's turn, except :meth:`Admitter._answered`, which a
shared ledger calls on its own thread. A shared ledger answers an admission
later (:class:`~actors.messages.AcquireAnswered`): until then the user's
next admissions wait, in order, so each is decided on the answer before it.
"""

from __future__ import annotations

import collections
import contextlib
import logging
from typing import Any

import pykka

from actors._runtime.mailbox import tell_here
from actors.context import UserExecutionContext
from actors.handle import ConnectionHandle
from actors.manager import ManagerActor
from actors.messages import AcquireAnswered, Admit, Attach
from actors.observer import AdmissionResult
from actors.policies.ledger import AcquireResult, PendingAcquire
from actors.policies.quota import Verdict
from actors.policies.reaping import ReapPolicy
from actors.policies.restart import RestartIntensity
from actors.ports import Admission, ManagerStats
from actors.runtime import Runtime
from actors.user.children import Child
from actors.user.keeper import ChildKeeper

__all__ = ["Admitter"]

log = logging.getLogger("actors.user")

_RESULT_OF: dict[AcquireResult, AdmissionResult] = {
    AcquireResult.SUPERSEDED: "superseded",  # the key was held on another node
    AcquireResult.EVICTED: "evicted",  # the user's oldest slot, on another node, was freed
    AcquireResult.HELD: "rejected_quota",
    AcquireResult.USER_FULL: "rejected_quota",
    AcquireResult.NODE_FULL: "rejected_node",
    AcquireResult.UNAVAILABLE: "rejected_unavailable",
}
_REFUSAL_REASON: dict[AdmissionResult, str] = {
    "rejected_quota": "quota_full",
    "rejected_node": "node_full",
    "rejected_unavailable": "ledger_unavailable",
}


class Admitter(ChildKeeper):
    """Admission: decide, take the slot, start or reuse the manager; the user's usage reported.

    ``__init__`` runs on the thread that starts the supervisor (the root's turn).
    """

    def __init__(self, user_id: str, runtime: Runtime) -> None:
        super().__init__(user_id, runtime)
        self._admits_seen = 0
        self._admitting: tuple[Admit, AdmissionResult, PendingAcquire] | None = None
        self._waiting_admits: collections.deque[Admit] = collections.deque()

    def _report(self) -> None:
        """Send the user's usage to the root (the supervisor's, at the end of its turn)."""
        raise NotImplementedError

    def _admit(self, msg: Admit) -> None:
        if self._admitting is not None:  # one at a time: its answer bears on the next
            self._waiting_admits.append(msg)
            return
        now = self._rt.clock.monotonic()
        ctx = msg.context
        holder = self._children.holder(ctx.isolation_key)
        if holder is None and self._rt.quota.should_sweep(self._children.used):
            self._sweep(now, "proactive")
        victim = self._victim()
        verdict = self._rt.quota.decide(self._children.used, holder is not None, victim is not None)
        if holder is not None:  # verdict is SUPERSEDE
            self._conclude(msg, self._supersede(holder, ctx, now))
        elif verdict is Verdict.REJECT:
            self._conclude(msg, None)
        else:
            if verdict is Verdict.EVICT and victim is not None:
                self._reap(self._children.by_id[victim], "evict", now)
            self._begin(msg, "evicted" if verdict is Verdict.EVICT else "admitted")

    def _victim(self) -> str | None:
        """The connection to evict, looked for only if the quota could evict one now."""
        if not self._rt.quota.may_evict(self._children.used):
            return None
        return ReapPolicy.oldest_idle(child.view() for child in self._children.connected())

    def _begin(self, msg: Admit, kind: AdmissionResult) -> None:
        quota, ctx = self._rt.quota, msg.context
        answer = self._rt.ledger.begin_acquire(
            self.user_id,
            ctx.isolation_key,
            ctx.websocket_id,
            quota.limit,
            evict=quota.evicts,
            notify=self._answered,
        )
        if isinstance(answer, PendingAcquire):  # a shared ledger: AcquireAnswered follows
            self._admitting = (msg, kind, answer)
        else:
            self._conclude(msg, kind if answer is AcquireResult.ACQUIRED else _RESULT_OF[answer])

    def _answered(self, pending: PendingAcquire) -> None:
        """The ledger's I/O thread: the answer to this supervisor's admission is in."""
        with contextlib.suppress(pykka.ActorDeadError):  # gone: the root cancels it
            self.actor_ref.tell(AcquireAnswered(pending))

    def _acquire_answered(self, msg: AcquireAnswered) -> None:
        if self._admitting is None or self._admitting[2] is not msg.pending:
            return
        admit, kind, pending = self._admitting
        answer = self._rt.ledger.end_acquire(pending)
        if isinstance(answer, PendingAcquire):  # asked again: the store came back meanwhile
            self._admitting = (admit, kind, answer)
            return
        self._admitting = None
        self._conclude(admit, kind if answer is AcquireResult.ACQUIRED else _RESULT_OF[answer])
        while self._waiting_admits and self._admitting is None:
            self._admit(self._waiting_admits.popleft())

    def _conclude(self, msg: Admit, result: AdmissionResult | None) -> None:
        self._admits_seen += 1
        if result is None or result.startswith("rejected"):
            self._refuse(msg, result or "rejected_quota")
        else:
            self._start(msg, result, self._rt.clock.monotonic())
        self._report()

    def _supersede(self, old: Child, ctx: UserExecutionContext, now: float) -> AdmissionResult:
        key = ctx.isolation_key
        moved = self._rt.ledger.transfer(
            self.user_id, key, old.context.websocket_id, ctx.websocket_id
        )
        old.holds_slot = False
        self._children.drop_key(old)
        self._reap(old, "supersede", now)
        if moved:
            return "superseded"
        # A shared ledger had already given the old slot away (and no room is
        # left to move it): the new connection needs a slot of its own.
        log.warning(
            "superseded connection had lost its slot user_id=%s isolation_key=%s",
            self.user_id,
            key,
        )
        return self._acquire(ctx, "superseded")

    def _acquire(self, ctx: UserExecutionContext, admitted: AdmissionResult) -> AdmissionResult:
        quota = self._rt.quota
        answer = self._rt.ledger.acquire(
            self.user_id, ctx.isolation_key, ctx.websocket_id, quota.limit, quota.evicts
        )
        if answer is AcquireResult.ACQUIRED:
            return admitted
        return _RESULT_OF[answer]

    def _refuse(self, msg: Admit, result: AdmissionResult) -> None:
        reason = _REFUSAL_REASON[result]
        if msg.ticket.offer(Admission(result, reason=reason, retry_after=1.0)):
            self._rt.observer.admission(result)  # else the caller gave up: it counts that
        log.debug(  # the front's access log has the refusal's line at INFO
            "refused user_id=%s websocket_id=%s reason=%s",
            self.user_id,
            msg.context.websocket_id,
            reason,
        )

    def _start(self, msg: Admit, result: AdmissionResult, now: float) -> None:
        ctx = msg.context
        stats = ManagerStats(connected_at=self._rt.clock.wall(), last_activity=now)
        manager = self._take_manager()
        handle = ConnectionHandle(
            ctx,
            self.actor_ref,
            manager,
            stats,
            self._rt.clock,
            inline=self._rt.inline_frames,
            supervisor_turn=self._rt.system_turn,
        )
        intensity = RestartIntensity(
            self._rt.settings.restart.max_restarts, self._rt.settings.restart.within_seconds
        )
        child = Child(ctx, msg.port, handle, stats, manager, intensity)
        self._children.add(child)
        self._attach(child)
        if not msg.ticket.offer(Admission(result, handle=handle)):
            self._free_slot(child, now)  # the caller gave up waiting: undo at once
            self._finish(child, "close", "ok", now)
            return
        self._rt.observer.admission(result)
        log.debug(  # the front's access log has the connection's line at INFO, at its end
            "admitted user_id=%s isolation_key=%s websocket_id=%s result=%s",
            self.user_id,
            ctx.isolation_key,
            ctx.websocket_id,
            result,
        )

    def _attach(self, child: Child) -> None:
        assert child.manager is not None
        handler = self._rt.handler_factory()
        tell_here(child.manager, Attach(child.context, child.port, child.stats, handler))

    def _take_manager(self) -> pykka.ActorRef[Any]:
        pool = self._children.pool
        while pool:
            ref, _ = pool.popleft()
            if ref.is_alive():
                self._rt.observer.pool_reuse()
                return ref
        return ManagerActor.start(
            self.actor_ref, self._rt.clock, self._rt.dispatcher, self._rt.pool
        )
