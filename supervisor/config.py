"""The settings of a ws-supervisor node, as frozen attrs classes.

One class per TOML table, plus the root :class:`Config`. Every default is the
production value, so ``Config()`` is the production configuration. Range
checks are attrs validators (so a hand-built config is checked too); their
messages are the ones the loader reports. Reading, type checking and
environment overrides live in :mod:`supervisor.configload`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, Literal

import attrs

__all__ = [
    "AdminConfig",
    "AuthConfig",
    "AuthMode",
    "CleanupConfig",
    "Compression",
    "Config",
    "CriticalAction",
    "EmergencyAction",
    "FailurePolicy",
    "JwtAlgorithm",
    "LimitsConfig",
    "LogLevel",
    "LoggingConfig",
    "PoolConfig",
    "ProfileName",
    "QuotaBackend",
    "QuotaConfig",
    "QuotaPolicyName",
    "RedisConfig",
    "RestartConfig",
    "RestartType",
    "ServerConfig",
    "ThresholdsConfig",
    "TimeoutsConfig",
    "parse_origins",
    "threshold_order_problem",
]

ProfileName = Literal["production", "staging", "ci", "dev"]
QuotaBackend = Literal["memory", "redis"]
FailurePolicy = Literal["fail_open", "fail_closed"]
QuotaPolicyName = Literal["reject", "evict_oldest_idle"]
CriticalAction = Literal["emergency_cleanup", "none"]
EmergencyAction = Literal["shed_idle", "none"]
RestartType = Literal["permanent", "transient", "temporary"]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]
Compression = Literal["deflate", "none"]
AuthMode = Literal["query", "jwt"]
JwtAlgorithm = Literal["HS256", "RS256"]

_Validator = Callable[[Any, "attrs.Attribute[Any]", Any], None]


def _check(ok: Callable[[Any], bool], requirement: str) -> _Validator:
    """A validator raising ``ValueError("<requirement>, got <value>")`` when ``ok`` fails."""

    def validate(_instance: Any, _attribute: attrs.Attribute[Any], value: Any) -> None:
        if not ok(value):
            raise ValueError(f"{requirement}, got {value!r}")

    return validate


def _at_least(low: float) -> _Validator:
    return _check(lambda v: v >= low, f"must be >= {low}")


def _positive() -> _Validator:
    return _check(lambda v: v > 0, "must be > 0")


def _port() -> _Validator:
    return _check(lambda v: 0 <= v <= 65535, "must be in [0, 65535]")


def _ratio() -> _Validator:
    return _check(lambda v: 0 < v <= 1, "must be in (0, 1]")


def _tick() -> _Validator:
    return _check(lambda v: 0 < v <= 60, "must be in (0, 60]")


def _import_path() -> _Validator:
    return _check(
        lambda v: v.count(":") == 1 and all(part.strip() for part in v.split(":")),
        "must be 'package.module:Name'",
    )


def _claim_list() -> _Validator:
    return _check(
        lambda v: (
            v == "" or all(re.fullmatch(r"[a-z_][a-z0-9_]*", c.strip()) for c in v.split(","))
        ),
        "must be claim names separated by commas (e.g. 'iat,jti')",
    )


def _ws_path() -> _Validator:
    return _check(lambda v: v.startswith("/"), "must start with '/'")


_ORIGIN_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^/\s,]+")


def parse_origins(text: str) -> tuple[str, ...]:
    """The allowed Origin values in ``text`` (comma-separated); () means any origin."""
    return tuple(item.strip() for item in text.split(",") if item.strip())


def _origins_ok(text: str) -> bool:
    if not text.strip():
        return True
    return all(_ORIGIN_RE.fullmatch(item.strip()) for item in text.split(","))


def _origins() -> _Validator:
    return _check(
        _origins_ok, "must be empty or comma-separated origins like 'https://app.example.com'"
    )


def _node_id() -> _Validator:
    return _check(
        lambda v: v == "" or re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", v) is not None,
        "must be empty or 1 to 64 ASCII letters, digits and . _ - (a letter or digit first)",
    )


def _redis_url() -> _Validator:
    return _check(
        lambda v: v.split("://", 1)[0] in ("redis", "rediss", "unix") and "://" in v,
        "must be a redis://, rediss:// or unix:// URL",
    )


def _key_prefix() -> _Validator:
    return _check(
        lambda v: re.fullmatch(r"[A-Za-z0-9._-]{1,32}", v) is not None,
        "must be 1 to 32 ASCII letters, digits and . _ -",
    )


def _not_reserved_env() -> _Validator:
    return _check(
        lambda v: not v.startswith("WS_SUPERVISOR_"),
        "must not start with 'WS_SUPERVISOR_' (reserved for config overrides)",
    )


@attrs.frozen
class ServerConfig:
    """The WebSocket listener. An empty ``node_id`` is generated per process.

    ``app`` is the application handler, ``package.module:Name`` (a class or a
    factory called once per connection); ``admission_timeout`` bounds the
    wait for the supervisor's answer; ``drain_timeout`` bounds a shutdown.
    """

    host: str = "0.0.0.0"
    port: int = attrs.field(default=8765, validator=_port())
    path: str = attrs.field(default="/ws", validator=_ws_path())
    node_id: str = attrs.field(default="", validator=_node_id())
    app: str = attrs.field(default="supervisor.apps:EchoApp", validator=_import_path())
    compression: Compression = "deflate"
    max_message_size: int = attrs.field(default=1_048_576, validator=_at_least(1))
    admission_timeout: float = attrs.field(default=5.0, validator=_positive())
    drain_timeout: float = attrs.field(default=10.0, validator=_positive())
    origins: str = attrs.field(default="", validator=_origins())

    @property
    def allowed_origins(self) -> tuple[str, ...] | None:
        """The Origin allow-list parsed from ``origins``; None when any origin is allowed."""
        return parse_origins(self.origins) or None


@attrs.frozen
class AdminConfig:
    """The admin HTTP endpoint; ``token_env`` names the env var holding its bearer token."""

    host: str = "127.0.0.1"
    port: int = attrs.field(default=8766, validator=_port())
    token_env: str = ""


@attrs.frozen
class AuthConfig:
    """How a WebSocket handshake is authenticated (see :mod:`supervisor.auth`).

    ``mode`` "jwt" takes the user id from the ``sub`` of a JWT signed with
    ``jwt_algorithm``: HS256 with the secret in the env var named by
    ``secret_env``, RS256 with the PEM public key in ``public_key_file``.
    ``audience`` and ``issuer`` are checked when not empty; ``leeway`` is the
    clock skew allowed, in seconds. ``mode`` "query" trusts a ``user_id``
    query parameter and is allowed only in the dev and ci profiles.
    """

    mode: AuthMode = "jwt"
    jwt_algorithm: JwtAlgorithm = "HS256"
    secret_env: str = attrs.field(default="WSS_JWT_SECRET", validator=_not_reserved_env())
    public_key_file: str = ""
    audience: str = ""
    issuer: str = ""
    leeway: float = attrs.field(default=0.0, validator=_at_least(0))
    require_exp: bool = True
    required_claims: str = attrs.field(default="", validator=_claim_list())

    @property
    def claims_required(self) -> tuple[str, ...]:
        """Every claim a token must carry: ``sub``, ``exp`` if required, then the listed ones."""
        extra = tuple(c.strip() for c in self.required_claims.split(",") if c.strip())
        return ("sub", *(("exp",) if self.require_exp else ()), *extra)


@attrs.frozen
class QuotaConfig:
    """Per-user and per-node caps on connection managers.

    ``backend`` "memory" counts slots in this process; "redis" counts them in
    the Redis named by ``[redis] url``, so the per-user cap holds across every
    node sharing it (see docs/CLUSTER.md). ``node_max_managers`` is always
    counted per node.
    """

    backend: QuotaBackend = "memory"
    max_managers_per_user: int = attrs.field(default=20, validator=_at_least(1))
    node_max_managers: int = attrs.field(default=10000, validator=_at_least(1))
    policy: QuotaPolicyName = "reject"
    proactive_cleanup_ratio: float = attrs.field(default=0.5, validator=_ratio())


@attrs.frozen
class RedisConfig:
    """The shared ledger of ``[quota] backend = "redis"`` (ignored with "memory").

    Every slot is a lease of ``lease_ttl`` seconds on the Redis server's
    clock, renewed every ``renew_interval`` by the node holding it. Every
    Redis call gives up after ``timeout`` seconds. While Redis is unreachable
    ``on_unavailable`` decides: "fail_open" admits under this node's own count
    of the user's slots and reports the node not ready; "fail_closed" refuses
    new connections (503). Existing connections are kept either way; the node
    tries Redis again every ``retry_interval`` seconds and re-registers its
    connections when it answers.
    """

    url: str = attrs.field(default="redis://127.0.0.1:6379/0", validator=_redis_url())
    key_prefix: str = attrs.field(default="wss", validator=_key_prefix())
    timeout: float = attrs.field(default=0.25, validator=_positive())
    lease_ttl: float = attrs.field(default=15.0, validator=_at_least(0.5))
    renew_interval: float = attrs.field(default=5.0, validator=_positive())
    on_unavailable: FailurePolicy = "fail_open"
    retry_interval: float = attrs.field(default=1.0, validator=_positive())

    def __attrs_post_init__(self) -> None:
        if self.renew_interval * 2 > self.lease_ttl:
            raise ValueError(
                "must satisfy renew_interval * 2 <= lease_ttl (a lease survives one missed "
                f"renewal), got renew_interval={self.renew_interval!r}, "
                f"lease_ttl={self.lease_ttl!r}"
            )


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

    warning: float = attrs.field(default=0.5, validator=_ratio())
    critical: float = attrs.field(default=0.8, validator=_ratio())
    emergency: float = attrs.field(default=0.9, validator=_ratio())
    critical_action: CriticalAction = "emergency_cleanup"
    emergency_action: EmergencyAction = "shed_idle"
    shed_min_idle: float = attrs.field(default=60.0, validator=_at_least(0))

    def __attrs_post_init__(self) -> None:
        problem = threshold_order_problem(self.warning, self.critical, self.emergency)
        if problem is not None:
            raise ValueError(problem)


@attrs.frozen
class RestartConfig:
    """Restart strategy: at most ``max_restarts`` within ``within_seconds``."""

    type: RestartType = "transient"
    max_restarts: int = attrs.field(default=3, validator=_at_least(0))
    within_seconds: float = attrs.field(default=10.0, validator=_positive())


@attrs.frozen
class CleanupConfig:
    """How long an emergency cleanup may take and how often the background sweep runs."""

    emergency_cleanup_timeout: float = attrs.field(default=15.0, validator=_positive())
    background_interval: float = attrs.field(default=120.0, validator=_positive())
    empty_supervisor_ttl: float = attrs.field(default=60.0, validator=_at_least(0))


@attrs.frozen
class PoolConfig:
    """Warm connections kept per user, and how long an idle one is kept."""

    size: int = attrs.field(default=4, validator=_at_least(0))
    idle_seconds: float = attrs.field(default=30.0, validator=_at_least(0))


@attrs.frozen
class TimeoutsConfig:
    """WebSocket keep-alive, idle limit and the supervisor's tick."""

    ping_interval: float = attrs.field(default=20.0, validator=_positive())
    ping_timeout: float = attrs.field(default=20.0, validator=_positive())
    idle_timeout: float = attrs.field(default=600.0, validator=_positive())
    tick_interval: float = attrs.field(default=0.5, validator=_tick())


@attrs.frozen
class LimitsConfig:
    """Limits that hold under abuse (see :mod:`supervisor.policies.limits`).

    Handshakes: ``handshakes_per_second_per_address`` with bursts of
    ``handshake_burst_per_address`` from one client address (429 beyond),
    at most ``max_concurrent_handshakes`` in progress (503 beyond), each done
    within ``open_timeout`` seconds. Per connection: ``messages_per_second``
    inbound with bursts of ``message_burst`` (1008 beyond), and at most
    ``max_outbound_queue`` frames waiting to be written (4004 beyond).
    """

    handshakes_per_second_per_address: float = attrs.field(default=20.0, validator=_positive())
    handshake_burst_per_address: int = attrs.field(default=40, validator=_at_least(1))
    max_concurrent_handshakes: int = attrs.field(default=1000, validator=_at_least(1))
    open_timeout: float = attrs.field(default=10.0, validator=_positive())
    messages_per_second: float = attrs.field(default=50.0, validator=_positive())
    message_burst: int = attrs.field(default=100, validator=_at_least(1))
    max_outbound_queue: int = attrs.field(default=1000, validator=_at_least(1))


@attrs.frozen
class LoggingConfig:
    """Log level and whether lines are JSON."""

    level: LogLevel = "INFO"
    json: bool = False


@attrs.frozen
class Config:
    """A whole node configuration; ``Config()`` is production."""

    profile: ProfileName = "production"
    server: ServerConfig = attrs.field(factory=ServerConfig)
    admin: AdminConfig = attrs.field(factory=AdminConfig)
    auth: AuthConfig = attrs.field(factory=AuthConfig)
    quota: QuotaConfig = attrs.field(factory=QuotaConfig)
    redis: RedisConfig = attrs.field(factory=RedisConfig)
    thresholds: ThresholdsConfig = attrs.field(factory=ThresholdsConfig)
    restart: RestartConfig = attrs.field(factory=RestartConfig)
    cleanup: CleanupConfig = attrs.field(factory=CleanupConfig)
    pool: PoolConfig = attrs.field(factory=PoolConfig)
    timeouts: TimeoutsConfig = attrs.field(factory=TimeoutsConfig)
    limits: LimitsConfig = attrs.field(factory=LimitsConfig)
    logging: LoggingConfig = attrs.field(factory=LoggingConfig)

    def cross_section_problems(self) -> list[tuple[str, str]]:
        """(key path, problem) for values that contradict a value of another section."""
        admission, opening = self.server.admission_timeout, self.limits.open_timeout
        if admission >= opening:
            problem = (
                f"must be below limits.open_timeout ({opening:g}), got {admission:g}: "
                "a slower admission would be cut off with no HTTP answer instead of a 503"
            )
            return [("server.admission_timeout", problem)]
        return []
