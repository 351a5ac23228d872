"""Usage levels: ok, warning, critical, emergency, and what each one calls for."""

from __future__ import annotations

import enum
from typing import Literal

import attrs

__all__ = ["Action", "Level", "Thresholds"]


class Level(enum.IntEnum):
    """How full a quota (a user's or the node's) is; ordered."""

    OK = 0
    WARNING = 1
    CRITICAL = 2
    EMERGENCY = 3

    @property
    def label(self) -> str:
        """The lower-case name used in logs, metrics and dumps."""
        return _LABELS[self]


_LABELS = {level: level.name.lower() for level in Level}  # read per usage report: no enum lookup


class Action(enum.Enum):
    """What the root monitor does when a quota reaches a level."""

    EMERGENCY_CLEANUP = "emergency_cleanup"
    """Reap every connection that is no longer live."""
    SHED_IDLE = "shed_idle"
    """Also close the longest-idle connections until usage is below critical."""


@attrs.frozen
class Thresholds:
    """Shares of a limit at which each level begins (warning < critical < emergency)."""

    warning: float = 0.5
    critical: float = 0.8
    emergency: float = 0.9
    critical_action: Literal["emergency_cleanup", "none"] = "emergency_cleanup"
    emergency_action: Literal["shed_idle", "none"] = "shed_idle"

    def classify(self, used: int, limit: int) -> Level:
        """The level of ``used`` slots out of ``limit``."""
        share = used / limit if limit > 0 else 1.0
        if share >= self.emergency:
            return Level.EMERGENCY
        if share >= self.critical:
            return Level.CRITICAL
        if share >= self.warning:
            return Level.WARNING
        return Level.OK

    def actions(self, level: Level) -> tuple[Action, ...]:
        """The cleanup actions a quota at ``level`` calls for, mildest first."""
        found: list[Action] = []
        if level >= Level.CRITICAL and self.critical_action == "emergency_cleanup":
            found.append(Action.EMERGENCY_CLEANUP)
        if level >= Level.EMERGENCY and self.emergency_action == "shed_idle":
            found.append(Action.SHED_IDLE)
        return tuple(found)

    @staticmethod
    def refuses_new_users(node_level: Level) -> bool:
        """True when the node is so full that users with no connection are turned away."""
        return node_level >= Level.EMERGENCY

    def below_critical(self, limit: int) -> int:
        """The largest slot count that is still below the critical level."""
        count = limit
        while count > 0 and self.classify(count, limit) >= Level.CRITICAL:
            count -= 1
        return count
