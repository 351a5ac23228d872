"""The root monitor actor: finds user supervisors, watches usage levels, cleans up."""

from __future__ import annotations

import collections
import contextlib
import logging
from types import TracebackType
from typing import Any

import pykka

from actors._runtime.mailbox import stop_soon, tell_here
from actors.codes import ServerCloseCode
from actors.messages import (
    Admit,
    Cleanup,
    GetSnapshot,
    GetSupervisors,
    Push,
    ReapConnection,
    Shed,
    SupervisorFailed,
    TakeBack,
    Tick,
    UsageReport,
)
from actors.policies.thresholds import Action, Level
from actors.ports import Admission
from actors.routing import RoutingActor
from actors.runtime import Runtime
from actors.ticker import Alarm
from actors.user.actor import UserSupervisorActor

__all__ = ["RootMonitorActor"]

log = logging.getLogger(__name__)

_ALERTS_KEPT = 50


class RootMonitorActor(RoutingActor):
    """Sees every user's usage and the node's; one per tree.

    Every hook runs on a worker of the tree's system dispatcher except
    ``__init__`` (the thread that starts the tree) and, when
    ``Runtime.system_turn`` allows it, a turn for an admission or a usage
    report that finds it asleep: that runs on the sender's thread (the
    event loop, a supervisor's). It never blocks on
    another actor, not even to stop: ``on_stop`` tells every supervisor to
    stop, and the tree waits for them (:meth:`SupervisionTree.stop`).
    """

    def __init__(self, runtime: Runtime, alarm: Alarm | None = None) -> None:
        super().__init__(runtime.system_dispatcher)
        self._rt = runtime
        self._alarm = alarm if alarm is not None else Alarm()  # when the ticker next wakes us
        self._sups: dict[str, pykka.ActorRef[Any]] = {}
        self._usage: dict[str, UsageReport] = {}
        self._levels: dict[str, Level] = {}
        self._forwarded: collections.Counter[str] = collections.Counter()
        self._empty_since: dict[str, float] = {}
        self._node_level = Level.OK
        self._node_used = 0
        self._users_active = 0  # kept as counts, not recounted: O(1) per report
        self._level_counts: collections.Counter[str] = collections.Counter()
        self._alerts: collections.deque[dict[str, Any]] = collections.deque(maxlen=_ALERTS_KEPT)
        self._last_background: float | None = None
        self._supervisor_restarts = 0
        self._last_ticked = 0
        self._dispatch = {
            Admit: self._route,
            Push: self._push,
            TakeBack: self._take_back,
            UsageReport: self._usage_report,
            Tick: self._tick,
            SupervisorFailed: self._supervisor_failed,
            Runtime: self._reconfigure,
            GetSupervisors: lambda _: dict(self._sups),
            GetSnapshot: self._snapshot,
        }

    # --- routing ----------------------------------------------------------------------

    def _route(self, msg: Admit) -> None:
        user_id = msg.context.user_id
        if user_id not in self._sups and self._rt.thresholds.refuses_new_users(self._node_level):
            refusal = Admission("rejected_node", reason="node_emergency", retry_after=5.0)
            if msg.ticket.offer(refusal):  # else the caller gave up waiting: it counts that
                self._rt.observer.admission("rejected_node")
            return
        self._forwarded[user_id] += 1
        self._empty_since.pop(user_id, None)
        turn = self._rt.system_turn  # an idle supervisor admits in this turn
        if not tell_here(self._supervisor(user_id), msg, turn):
            del self._sups[user_id]  # crashed; its SupervisorFailed is on the way
            self._supervisor(user_id).tell(msg)

    def _push(self, msg: Push) -> None:
        ref = self._sups.get(msg.user_id)
        if ref is None or not tell_here(ref, msg):  # an idle supervisor pushes in this turn
            msg.reply(0)

    def _take_back(self, msg: TakeBack) -> None:
        ref = self._sups.get(msg.user_id)
        if ref is not None:
            self._tell(ref, ReapConnection(msg.websocket_id, msg.reason, msg.why))

    def _supervisor(self, user_id: str) -> pykka.ActorRef[Any]:
        ref = self._sups.get(user_id)
        if ref is None:
            ref = UserSupervisorActor.start(user_id, self.actor_ref, self._rt)
            self._sups[user_id] = ref
        return ref

    # --- usage and levels ------------------------------------------------------------------

    def _usage_report(self, report: UsageReport) -> None:
        user_id = report.user_id
        if user_id not in self._sups:
            return  # from a supervisor that has already been stopped or replaced
        previous = self._usage.get(user_id)
        self._usage[user_id] = report
        self._alarm.request(report.wake_at)
        if previous is not None and previous.counts == report.counts:
            return  # only its wake time moved
        self._node_used += report.used - (previous.used if previous else 0)
        self._users_active += (report.used > 0) - (previous is not None and previous.used > 0)
        schedule = self._rt.schedule
        if schedule.is_empty(report.used, report.admits_seen, self._forwarded[user_id]):
            since = self._empty_since.setdefault(user_id, self._rt.clock.monotonic())
            self._alarm.request(schedule.retire_at(since))
        else:
            self._empty_since.pop(user_id, None)
        self._set_user_level(user_id, self._rt.thresholds.classify(report.used, report.limit))
        self._update_node()

    def _set_user_level(self, user_id: str, level: Level) -> None:
        old = self._levels.get(user_id)
        if old is level:
            return  # most reports: nothing to count or act on
        self._levels[user_id] = level
        if old is not None:
            self._level_counts[old.label] -= 1
        self._level_counts[level.label] += 1
        old = Level.OK if old is None else old
        if level == old:
            return
        self._alert("user", old, level, user_id)
        ref = self._sups.get(user_id)
        if ref is not None and level > old:
            limit = self._usage[user_id].limit
            self._act(ref, self._new_actions(old, level), limit)

    def _update_node(self) -> None:
        level = self._rt.thresholds.classify(
            self._node_used, self._rt.settings.quota.node_max_managers
        )
        old, self._node_level = self._node_level, level
        if level != old:
            self._alert("node", old, level, None)
            if level > old:
                for user_id, ref in self._sups.items():
                    limit = self._usage[user_id].limit if user_id in self._usage else 1
                    self._act(ref, self._new_actions(old, level), limit)
        self._rt.observer.usage(self._node_used, self._users_active, self._level_counts)

    def _new_actions(self, old: Level, new: Level) -> list[Action]:
        before = set(self._rt.thresholds.actions(old))
        return [action for action in self._rt.thresholds.actions(new) if action not in before]

    def _act(self, ref: pykka.ActorRef[Any], actions: list[Action], limit: int) -> None:
        now = self._rt.clock.monotonic()  # when the emergency cleanup starts
        for action in actions:
            if action is Action.EMERGENCY_CLEANUP:
                message: Cleanup | Shed = Cleanup("emergency", now)
            else:
                keep = self._rt.thresholds.below_critical(limit)
                message = Shed(keep, self._rt.settings.thresholds.shed_min_idle, now)
            with contextlib.suppress(pykka.ActorDeadError):
                ref.tell(message)

    def _alert(self, scope: str, old: Level, new: Level, user_id: str | None) -> None:
        self._alerts.append(
            {
                "at": round(self._rt.clock.wall(), 3),
                "scope": scope,
                "user_id": user_id,
                "from": old.label,
                "to": new.label,
            }
        )
        self._rt.observer.level_changed(scope, old.label, new.label)
        logger = log.warning if new > old else log.info
        logger("level %s -> %s scope=%s user_id=%s", old.label, new.label, scope, user_id)

    # --- time ---------------------------------------------------------------------------------

    def _tick(self, tick: Tick) -> None:
        usage, ticked = self._usage, 0
        for user_id, ref in list(self._sups.items()):
            report = usage.get(user_id)
            if report is None or report.wake_at <= tick.now:  # only who has work by now
                self._tell(ref, tick)
                ticked += 1
        self._last_ticked = ticked
        schedule = self._rt.schedule
        if self._last_background is None:
            self._last_background = tick.now
        elif schedule.background_due(self._last_background, tick.now):
            self._last_background = tick.now
            for ref in list(self._sups.values()):
                self._tell(ref, Cleanup("timeout"))
        for user_id, since in list(self._empty_since.items()):
            if schedule.retire(since, tick.now):
                self._retire_supervisor(user_id)
        self._alarm.set(self._next_due(tick.now))

    def _next_due(self, now: float) -> float:
        """The earliest time a tick can find work: a supervisor's, a background sweep, a retirement.

        A supervisor that has not reported yet is due at once. A report
        that a tick is about to move is still the old one: the next tick
        then comes ``tick_interval`` later and sets the alarm right.
        """
        schedule, usage = self._rt.schedule, self._usage
        due = schedule.next_background(
            now if self._last_background is None else self._last_background
        )
        for user_id in self._sups:
            report = usage.get(user_id)
            due = min(due, now if report is None else report.wake_at)
        for since in self._empty_since.values():
            due = min(due, schedule.retire_at(since))
        return due

    def _retire_supervisor(self, user_id: str) -> None:
        ref = self._sups.pop(user_id)
        self._empty_since.pop(user_id, None)
        self._usage.pop(user_id, None)  # empty by then: no total to adjust
        level = self._levels.pop(user_id, None)
        if level is not None:
            self._level_counts[level.label] -= 1
        self._forwarded.pop(user_id, None)
        stop_soon(ref)
        log.debug("stopped empty supervisor user_id=%s", user_id)

    @staticmethod
    def _tell(ref: pykka.ActorRef[Any], message: object) -> None:
        with contextlib.suppress(pykka.ActorDeadError):
            ref.tell(message)

    # --- failures ----------------------------------------------------------------------------

    def _supervisor_failed(self, msg: SupervisorFailed) -> None:
        """Close a crashed supervisor's connections (1012), free their slots, start a new one.

        A report from a supervisor that was already replaced (an admission
        found it dead first and started the next) frees only the slots its
        own connections held: the user's other slots are the new one's.
        """
        user_id = msg.user_id
        for orphan in msg.orphans:
            if orphan.port is not None:
                try:
                    orphan.port.close(int(ServerCloseCode.SERVICE_RESTART), "supervisor restarted")
                except Exception:
                    log.exception("port close failed websocket_id=%s", orphan.context.websocket_id)
            if orphan.holds_slot:
                self._rt.observer.cleanup("crash", "ok", 0.0)
        stop_refs = [o.manager for o in msg.orphans if o.manager is not None]
        for ref in [*stop_refs, *msg.idle_managers]:
            stop_soon(ref)
        current = self._sups.get(user_id)
        replaced = current is not None and current.actor_urn != msg.actor_urn
        if replaced:
            freed = sum(
                self._rt.ledger.release(user_id, o.context.isolation_key, o.context.websocket_id)
                for o in msg.orphans
                if o.holds_slot
            )
        else:
            freed = self._rt.ledger.release_user(user_id)
        self._supervisor_restarts += 1
        self._rt.observer.restart()
        log.error(
            "user supervisor crashed user_id=%s orphans=%d slots_freed=%d; restarting",
            user_id,
            len(msg.orphans),
            freed,
        )
        if replaced:
            return  # the new supervisor reports its own usage
        self._sups.pop(user_id, None)
        self._supervisor(user_id)
        self._usage_report(
            UsageReport(user_id, 0, self._rt.quota.limit, 0, self._forwarded[user_id])
        )

    def _reconfigure(self, runtime: Runtime) -> None:
        self._rt = runtime
        for ref in self._sups.values():
            self._tell(ref, runtime)

    # --- state and end of life --------------------------------------------------------------

    def _snapshot(self, _: GetSnapshot) -> dict[str, Any]:
        t = self._rt.thresholds
        return {
            "node_level": self._node_level.label,
            "node_used": self._node_used,
            "node_limit": self._rt.settings.quota.node_max_managers,
            "users": len(self._sups),
            "levels": {label: n for label, n in self._level_counts.items() if n},
            "user_levels": {user: lv.label for user, lv in self._levels.items()},
            "thresholds": {"warning": t.warning, "critical": t.critical, "emergency": t.emergency},
            "supervisor_restarts": self._supervisor_restarts,
            "ticked_last": self._last_ticked,
            "alerts": list(self._alerts),
        }

    def on_stop(self) -> None:
        """Runs on a system worker at shutdown: tell every supervisor to stop (no wait)."""
        for ref in self._sups.values():
            stop_soon(ref)
        self._sups.clear()

    def on_failure(
        self,
        exception_type: type[BaseException] | None,
        exception_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Runs on a system worker after a crash: stop the supervisors, slots freed."""
        self.on_stop()
