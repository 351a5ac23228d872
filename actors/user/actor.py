"""The user supervisor actor: one per user; owns the user's quota and its managers."""

from __future__ import annotations

import logging
from types import TracebackType
from typing import Any

import pykka

from actors._runtime.mailbox import stop_soon, tell_here
from actors.manager import ManagerActor
from actors.messages import (
    AcquireAnswered,
    Admit,
    ChildFailed,
    ChildStopped,
    Cleanup,
    ConnectionClosed,
    GetSnapshot,
    Inbound,
    ManagerIdle,
    Orphan,
    Outbound,
    PeerGone,
    Push,
    ReapConnection,
    Shed,
    SupervisorFailed,
    Tick,
    UsageReport,
)
from actors.policies.reaping import ReapPolicy
from actors.policies.restart import should_restart
from actors.runtime import Runtime
from actors.user.admission import Admitter
from actors.user.snapshot import user_snapshot

__all__ = ["UserSupervisorActor"]

log = logging.getLogger("actors.user")


class UserSupervisorActor(Admitter):
    """Admits, supervises and cleans up one user's connections.

    Every hook runs on a worker of the tree's system dispatcher except
    ``__init__`` (the root's turn) and, when ``Runtime.system_turn`` allows
    it, a turn for an admission, a close or a timeout that finds it asleep:
    that runs on the sender's thread (the event loop, or the root's turn).
    Decisions come from the pure policies in the
    :class:`~actors.runtime.Runtime`; this class carries messages to them and
    acts on the answers. Every change of usage is reported to the root.
    """

    def __init__(self, user_id: str, root: pykka.ActorRef[Any], runtime: Runtime) -> None:
        super().__init__(user_id, runtime)
        self._root = root
        self._restarts = 0
        self._last_report: UsageReport | None = None
        self._report_due = False
        self._dispatch = {
            Admit: self._admit,
            AcquireAnswered: self._acquire_answered,
            ConnectionClosed: self._closed,
            PeerGone: self._peer_gone,
            Inbound: self._forward,
            Push: self._push,
            Tick: self._tick,
            ChildFailed: self._child_failed,
            ManagerIdle: self._manager_idle,
            ChildStopped: self._child_stopped,
            ReapConnection: self._reap_connection,
            Cleanup: self._cleanup,
            Shed: self._shed,
            Runtime: self._reconfigure,
            GetSnapshot: self._snapshot,
        }

    # --- messages from the shell and the managers -------------------------------------

    def _closed(self, msg: ConnectionClosed) -> None:
        child = self._children.by_id.get(msg.websocket_id)
        if child is None:
            if msg.websocket_id not in self._children.retired:
                self._rt.observer.thread_id_mismatch()
                log.error(
                    "close for unknown websocket_id=%s user_id=%s", msg.websocket_id, self.user_id
                )
            return
        if child.holds_slot:
            self._free_slot(child, msg.detected_at)
        started = child.closing_since if child.closing_since is not None else msg.detected_at
        self._finish(child, child.close_reason or "close", "ok", started)
        self._report()

    def _peer_gone(self, msg: PeerGone) -> None:
        child = self._children.by_id.get(msg.websocket_id)
        if child is None or not child.holds_slot:
            return  # its ConnectionClosed, which follows, reports a stray id
        self._free_slot(child, msg.detected_at)
        if child.state == "connected":
            self._children.mark_closing(child, msg.detected_at)
            child.close_reason = "close"
        # no report: the ConnectionClosed that follows retires the manager, then reports

    def _forward(self, msg: Inbound) -> None:
        child = self._children.by_id.get(msg.websocket_id)
        if child is None or child.state != "connected":
            return
        try:
            if child.manager is None:
                raise pykka.ActorDeadError("between a crash and its restart")
            child.manager.tell(msg)
        except pykka.ActorDeadError:
            child.held_frames.append(msg)  # its ChildFailed is on the way: replay at restart

    def _push(self, msg: Push) -> None:
        delivered = 0
        for child in self._children.connected():
            if msg.thread_id is not None and child.context.thread_id != msg.thread_id:
                continue
            outbound = Outbound(child.context.websocket_id, msg.text)
            if child.manager is not None and tell_here(child.manager, outbound):
                delivered += 1  # an idle manager sends it in this turn
        msg.reply(delivered)

    def _child_failed(self, msg: ChildFailed) -> None:
        child = self._children.by_id.get(msg.websocket_id)
        if child is None or child.manager is None or child.manager.actor_urn != msg.actor_urn:
            return
        child.manager = None
        now = self._rt.clock.monotonic()
        restart = should_restart(self._rt.settings.restart.type, crashed=True)
        if child.state == "connected" and restart and child.intensity.allow(now):
            child.manager = ManagerActor.start(
                self.actor_ref, self._rt.clock, self._rt.dispatcher, self._rt.pool
            )
            child.handle.rebind(child.manager)
            child.stats.restarts += 1
            self._restarts += 1
            self._attach(child)
            for frame in (*msg.pending, *child.held_frames):
                child.manager.tell(frame)
            child.held_frames.clear()
            self._rt.observer.restart()
            log.warning(
                "restarted manager websocket_id=%s isolation_key=%s error=%s",
                msg.websocket_id,
                child.context.isolation_key,
                msg.error,
            )
        else:
            self._reap(child, "crash", now, "crashed beyond the restart limit")
            self._report()

    def _manager_idle(self, msg: ManagerIdle) -> None:
        entry = self._children.detaching.pop(msg.actor_urn, None)
        if entry is None:  # abandoned earlier, answering late: it must still end
            self._stop_late_manager(msg.actor_urn)
            return
        now = self._rt.clock.monotonic()
        if msg.reusable and self._rt.pool.has_room(len(self._children.pool)):
            self._children.pool.append((entry[0], now))
        else:
            self._stop_manager(entry[0], now)
        self._report()

    @staticmethod
    def _stop_late_manager(actor_urn: str) -> None:
        ref = pykka.ActorRegistry.get_by_urn(actor_urn)
        if ref is not None:
            ref.stop(block=False)

    def _child_stopped(self, msg: ChildStopped) -> None:
        self._children.stopping.pop(msg.actor_urn, None)

    # --- messages from the root -----------------------------------------------------------

    def _tick(self, msg: Tick) -> None:
        now = msg.now
        self._sweep_if_due(now, "timeout")
        for child in self._children.closing():
            assert child.closing_since is not None
            if self._rt.reap.is_overdue(child.closing_since, now):
                self._abandon_close(child, now)
        for table in (self._children.detaching, self._children.stopping):
            for urn, (ref, since) in list(table.items()):
                if self._rt.reap.is_overdue(since, now):
                    del table[urn]
                    ref.stop(block=False)  # if it ever wakes up, it ends
                    self._rt.observer.abandoned()
                    log.warning("abandoned manager %s of user_id=%s", urn, self.user_id)
        pool = self._children.pool
        while pool and self._rt.pool.expired(pool[0][1], now):
            self._stop_manager(pool.popleft()[0], now)
        self._report()

    def _cleanup(self, msg: Cleanup) -> None:
        now = self._rt.clock.monotonic()
        reaped = self._sweep(now, msg.trigger)
        if msg.trigger == "emergency":
            self._emergency_began(msg.started_at, reaped, now)
        self._report()

    def _shed(self, msg: Shed) -> None:
        now = self._rt.clock.monotonic()
        views = [child.view() for child in self._children.connected()]
        shed = ReapPolicy.shed(views, now, msg.keep, msg.min_idle)
        for websocket_id in shed:
            self._reap(self._children.by_id[websocket_id], "evict", now, "shed at emergency")
        self._emergency_began(msg.started_at, shed, now)
        self._report()

    def _reap_connection(self, msg: ReapConnection) -> None:
        child = self._children.by_id.get(msg.websocket_id)
        if child is not None:
            self._reap(child, msg.reason, self._rt.clock.monotonic(), msg.why)
            self._report()

    def _reconfigure(self, runtime: Runtime) -> None:
        self._rt = runtime
        self._next_sweep = float("-inf")  # the timeouts may have shortened
        self._report()

    def _report(self) -> None:
        self._report_due = True  # sent once per turn, by on_turn_end

    def on_turn_end(self) -> None:
        """After a turn: one usage report to the root for all its messages, if it changed."""
        if not self._report_due:
            return
        self._report_due = False
        used, limit, idle = self._children.used, self._rt.quota.limit, len(self._children.pool)
        wake_at = self._wake_at()
        last = self._last_report
        counts = (used, limit, idle, self._admits_seen)
        if last is not None and (last.counts, last.wake_at) == (counts, wake_at):
            return  # most turns change nothing: no report object to build
        report = UsageReport(self.user_id, used, limit, idle, self._admits_seen, wake_at)
        self._last_report = report
        tell_here(self._root, report, self._rt.root_turn)  # dead: the tree stops

    # --- state and end of life ------------------------------------------------------------------

    def _snapshot(self, _: GetSnapshot) -> dict[str, Any]:
        return user_snapshot(
            self.user_id, self._children, self._rt.quota.limit, self._restarts, self._rt.clock
        )

    def on_stop(self) -> None:
        """At shutdown: close (1001), free every slot, tell every manager to stop (no wait)."""
        if self._admitting is not None:  # its answer would come to nobody
            self._rt.ledger.cancel_acquire(self._admitting[2])
            self._admitting = None
        now = self._rt.clock.monotonic()
        for child in list(self._children.by_id.values()):
            if child.state == "connected":
                self._reap(child, "shutdown", now, "server shutting down")
            manager, child.manager = child.manager, None
            self._finish(child, child.close_reason or "shutdown", "ok", now)
            if manager is not None:
                self._children.stopping[manager.actor_urn] = (manager, now)
        refs = self._children.managers()
        self._children.pool.clear()
        for ref in refs:  # the tree waits for them; this worker must not
            stop_soon(ref)

    def on_failure(
        self,
        exception_type: type[BaseException] | None,
        exception_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """After a crash: hand everything to the root."""
        orphans = tuple(
            Orphan(
                child.context,
                child.port if child.state == "connected" else None,
                child.manager,
                child.holds_slot,
            )
            for child in self._children.by_id.values()
        )
        idle = tuple(ref for ref, _ in self._children.pool) + tuple(
            ref
            for ref, _ in (*self._children.detaching.values(), *self._children.stopping.values())
        )
        try:
            self._root.tell(SupervisorFailed(self.user_id, self.actor_urn, orphans, idle))
        except pykka.ActorDeadError:
            log.error("user supervisor %s crashed while the root is gone", self.user_id)
