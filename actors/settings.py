"""The engine's settings: quota, thresholds, restart, cleanup, pool and timeouts.

One frozen attrs class per section, and :class:`Settings`, the root the
tree takes. Every default is the production value. Range checks are attrs
validators, so a hand-built value is checked too; their messages are the
ones the product's config loader reports with the key path
(:mod:`supervisor.config`), whose ``Config`` adds the product's own
sections (server, admin, auth, redis, limits, logging) to these.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import attrs

__all__ = [
    "CleanupConfig",
    "CriticalAction",
    "EmergencyAction",
    "PoolConfig",
    "QuotaBackend",
    "QuotaConfig",
    "QuotaPolicyName",
    "RestartConfig",
    "RestartType",
    "Settings",
    "ThresholdsConfig",
    "TimeoutsConfig",
    "Validator",
    "at_least",
    "check",
    "positive",
    "ratio",
    "threshold_order_problem",
]

QuotaBackend = Literal["memory", "redis"]
QuotaPolicyName = Literal["reject", "evict_oldest_idle"]
CriticalAction = Literal["emergency_cleanup", "none"]
EmergencyAction = Literal["shed_idle", "none"]
RestartType = Literal["permanent", "transient", "temporary"]
"""As in an OTP child spec: ``permanent`` always restarts, ``transient`` only
after an abnormal exit (a crash), ``temporary`` never. A manager's normal exit
is its connection closing, after which nothing is left to restart, so for
managers ``permanent`` and ``transient`` behave alike."""

Validator = Callable[[Any, "attrs.Attribute[Any]", Any], None]
"""An attrs validator: raises ValueError with the message a loader reports."""


def check(ok: Callable[[Any], bool], requirement: str) -> Validator:
    """A validator raising ``ValueError("<requirement>, got <value>")`` when ``ok`` fails."""

    def validate(_instance: Any, _attribute: attrs.Attribute[Any], value: Any) -> None:
        if not ok(value):
            raise ValueError(f"{requirement}, got {value!r}")

    return validate


def at_least(low: float) -> Validator:
    return check(lambda v: v >= low, f"must be >= {low}")


def positive() -> Validator:
    return check(lambda v: v > 0, "must be > 0")


def ratio() -> Validator:
    return check(lambda v: 0 < v <= 1, "must be in (0, 1]")


def _tick() -> Validator:
    return check(lambda v: 0 < v <= 60, "must be in (0, 60]")


@attrs.frozen
class QuotaConfig:
    """Per-user and per-node caps on connection managers.

    ``backend`` "memory" counts slots in this process; "redis" counts them in
    the Redis named by ``[redis] url``, so the per-user cap holds across every
    node sharing it (see docs/CLUSTER.md). ``node_max_managers`` is always
    counted per node.
    """

    backend: QuotaBackend = "memory"
    max_managers_per_user: int = attrs.field(default=20, validator=at_least(1))
    node_max_managers: int = attrs.field(default=10000, validator=at_least(1))
    policy: QuotaPolicyName = "reject"
    proactive_cleanup_ratio: float = attrs.field(default=0.5, validator=ratio())


def threshold_order_problem(warning: float, critical: float, emergency: float) -> str | None:
    """Why the three load thresholds are out of order, or None when they are fine."""
    if warning < critical < emergency:
        return None
    return (
        "must satisfy warning < critical < emergency, "
        f"got warning={warning!r}, critical={critical!r}, emergency={emergency!r}"
    )


@attrs.frozen
class ThresholdsConfig:
    """Usage levels, as shares of a user's quota and of ``node_max_managers``.

    ``critical_action`` runs when a user (or the node) reaches critical,
    ``emergency_action`` at emergency; shedding closes only connections idle
    for ``shed_min_idle`` seconds or more.
    """

    warning: float = attrs.field(default=0.5, validator=ratio())
    critical: float = attrs.field(default=0.8, validator=ratio())
    emergency: float = attrs.field(default=0.9, validator=ratio())
    critical_action: CriticalAction = "emergency_cleanup"
    emergency_action: EmergencyAction = "shed_idle"
    shed_min_idle: float = attrs.field(default=60.0, validator=at_least(0))

    def __attrs_post_init__(self) -> None:
        problem = threshold_order_problem(self.warning, self.critical, self.emergency)
        if problem is not None:
            raise ValueError(problem)


@attrs.frozen
class RestartConfig:
    """OTP's restart type, and its restart intensity (``max_restarts``) and period
    (``within_seconds``): at most that many restarts in that many seconds."""

    type: RestartType = "transient"
    max_restarts: int = attrs.field(default=3, validator=at_least(0))
    within_seconds: float = attrs.field(default=10.0, validator=positive())


@attrs.frozen
class CleanupConfig:
    """How long an emergency cleanup may take and how often the background sweep runs."""

    emergency_cleanup_timeout: float = attrs.field(default=15.0, validator=positive())
    background_interval: float = attrs.field(default=120.0, validator=positive())
    empty_supervisor_ttl: float = attrs.field(default=60.0, validator=at_least(0))


@attrs.frozen
class PoolConfig:
    """Warm connections kept per user, how long an idle one is kept, and how many
    connections one manager serves before it is stopped instead of pooled (0: no limit)."""

    size: int = attrs.field(default=4, validator=at_least(0))
    idle_seconds: float = attrs.field(default=30.0, validator=at_least(0))
    max_uses: int = attrs.field(default=1000, validator=at_least(0))


@attrs.frozen
class TimeoutsConfig:
    """WebSocket keep-alive, idle limit and the supervisor's tick."""

    ping_interval: float = attrs.field(default=20.0, validator=positive())
    ping_timeout: float = attrs.field(default=20.0, validator=positive())
    idle_timeout: float = attrs.field(default=600.0, validator=positive())
    tick_interval: float = attrs.field(default=0.5, validator=_tick())


@attrs.frozen
class Settings:
    """What a supervision tree reads; ``Settings()`` is production's."""

    quota: QuotaConfig = attrs.field(factory=QuotaConfig)
    thresholds: ThresholdsConfig = attrs.field(factory=ThresholdsConfig)
    restart: RestartConfig = attrs.field(factory=RestartConfig)
    cleanup: CleanupConfig = attrs.field(factory=CleanupConfig)
    pool: PoolConfig = attrs.field(factory=PoolConfig)
    timeouts: TimeoutsConfig = attrs.field(factory=TimeoutsConfig)
