"""What every actor of one tree shares: settings, policies, clock, ledger, observer."""

from __future__ import annotations

from collections.abc import Callable

import attrs

from actors._runtime.dispatch import Dispatcher
from actors.clock import Clock
from actors.observer import Observer
from actors.policies.ledger import Ledger
from actors.policies.pool import PoolPolicy
from actors.policies.quota import QuotaPolicy
from actors.policies.reaping import ReapPolicy
from actors.policies.schedule import CleanupSchedule
from actors.policies.thresholds import Thresholds
from actors.ports import Handler
from actors.settings import Settings

__all__ = ["Runtime"]


@attrs.frozen
class Runtime:
    """Immutable; a reload builds a new one and sends it down the tree.

    ``handler_factory`` makes one application handler per connection, so a
    reused manager carries nothing of its previous connection.
    ``dispatcher`` runs every manager actor of the tree, ``system_dispatcher``
    the root and the user supervisors (both owned by the tree: started and
    stopped with it). They are apart so that an application handler that
    blocks the managers' workers never stops slots from being freed.
    ``inline_frames``: the handlers promise never to block (``runs_inline``),
    so frames may be handled on the thread that delivers them.
    ``system_turn``: how many messages an idle root or user supervisor may
    handle on the thread that sends it one from the shell (the event loop),
    in a turn of its own (:func:`~actors._runtime.mailbox.tell_here`): the system
    dispatcher's batch when the ledger never blocks (in memory), 0 (never)
    with a shared ledger, whose calls may wait on the network. The root
    takes at most two messages so (``root_turn``): the one at hand, and the
    usage report that the user's supervisor sends back in that same turn
    (an admission's), which would otherwise wake the system worker once per
    admission. Anything else that waits for it stays on its worker.
    """

    settings: Settings
    clock: Clock
    ledger: Ledger
    observer: Observer
    handler_factory: Callable[[], Handler]
    dispatcher: Dispatcher = attrs.field(kw_only=True, eq=False)
    system_dispatcher: Dispatcher = attrs.field(kw_only=True, eq=False)
    quota: QuotaPolicy = attrs.field(init=False)
    reap: ReapPolicy = attrs.field(init=False)
    thresholds: Thresholds = attrs.field(init=False)
    pool: PoolPolicy = attrs.field(init=False)
    schedule: CleanupSchedule = attrs.field(init=False)
    inline_frames: bool = attrs.field(init=False)
    system_turn: int = attrs.field(init=False)

    @quota.default
    def _quota(self) -> QuotaPolicy:
        q = self.settings.quota
        return QuotaPolicy(q.max_managers_per_user, q.proactive_cleanup_ratio, q.policy)

    @reap.default
    def _reap(self) -> ReapPolicy:
        t = self.settings.timeouts
        return ReapPolicy(
            idle_timeout=t.idle_timeout,
            keepalive_deadline=t.ping_interval + t.ping_timeout,
            cleanup_timeout=self.settings.cleanup.emergency_cleanup_timeout,
        )

    @pool.default
    def _pool(self) -> PoolPolicy:
        pool = self.settings.pool
        return PoolPolicy(pool.size, pool.idle_seconds, pool.max_uses)

    @schedule.default
    def _schedule(self) -> CleanupSchedule:
        c = self.settings.cleanup
        return CleanupSchedule(c.background_interval, c.empty_supervisor_ttl)

    @inline_frames.default
    def _inline_frames(self) -> bool:
        return getattr(self.handler_factory(), "runs_inline", False) is True

    @system_turn.default
    def _system_turn(self) -> int:
        return 0 if self.ledger.shared else self.system_dispatcher.batch

    @property
    def root_turn(self) -> int:
        """The root's :attr:`system_turn`: the message at hand and its report (2), or 0."""
        return min(2, self.system_turn)

    @thresholds.default
    def _thresholds(self) -> Thresholds:
        t = self.settings.thresholds
        return Thresholds(t.warning, t.critical, t.emergency, t.critical_action, t.emergency_action)
