"""ws-supervisor: an actor-model connection supervisor for WebSocket backends.

The product built on the engine in :mod:`actors`: the WebSocket front
(:mod:`supervisor.front`), the admin listener (:mod:`supervisor.admin`), the
Redis cluster (:mod:`supervisor.cluster`), the configuration
(:mod:`supervisor.config`) and the process (:mod:`supervisor.cli`,
:mod:`supervisor.daemon`, :mod:`supervisor.logs`, :mod:`supervisor.gc_tuning`).

The names a user needs are here, imported from their modules on first use,
so ``import supervisor`` stays light: the engine's own public names that an
embedder uses with them are offered too (from :mod:`actors`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from actors._lazy import lazy_exports

if TYPE_CHECKING:
    from actors.context import UserExecutionContext
    from actors.errors import AdmissionRefused, WsSupervisorError
    from actors.ports import Handle, Port, QueuePort
    from actors.tree import SupervisionTree
    from supervisor.admin.metrics import MetricsObserver
    from supervisor.cluster.push_tally import PushAnswer
    from supervisor.config.load import load_config, load_profile, parse_config
    from supervisor.config.schema import Config
    from supervisor.daemon import Daemon
    from supervisor.errors import AuthError, ConfigError, ConfigIssue
    from supervisor.front.apps import EchoApp, WorkerEchoApp
    from supervisor.front.embed import serve_supervised, supervise
    from supervisor.front.protocol import App

__version__ = "0.1.0"

_EXPORTS = {
    "UserExecutionContext": "actors.context",
    **dict.fromkeys(["AdmissionRefused", "WsSupervisorError"], "actors.errors"),
    **dict.fromkeys(["Handle", "Port", "QueuePort"], "actors.ports"),
    "SupervisionTree": "actors.tree",
    "MetricsObserver": "supervisor.admin.metrics",
    "PushAnswer": "supervisor.cluster.push_tally",
    **dict.fromkeys(["load_config", "load_profile", "parse_config"], "supervisor.config.load"),
    "Config": "supervisor.config.schema",
    "Daemon": "supervisor.daemon",
    **dict.fromkeys(["AuthError", "ConfigError", "ConfigIssue"], "supervisor.errors"),
    **dict.fromkeys(["EchoApp", "WorkerEchoApp"], "supervisor.front.apps"),
    **dict.fromkeys(["serve_supervised", "supervise"], "supervisor.front.embed"),
    "App": "supervisor.front.protocol",
}

__all__ = [
    "AdmissionRefused",
    "App",
    "AuthError",
    "Config",
    "ConfigError",
    "ConfigIssue",
    "Daemon",
    "EchoApp",
    "Handle",
    "MetricsObserver",
    "Port",
    "PushAnswer",
    "QueuePort",
    "SupervisionTree",
    "UserExecutionContext",
    "WorkerEchoApp",
    "WsSupervisorError",
    "__version__",
    "load_config",
    "load_profile",
    "parse_config",
    "serve_supervised",
    "supervise",
]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
