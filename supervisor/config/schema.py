"""The settings of a ws-supervisor node, as frozen attrs classes.

One class per TOML table, plus the root :class:`Config`, which extends the
engine's :class:`actors.settings.Settings` (quota, thresholds, restart,
cleanup, pool, timeouts) with the product's sections. Every default is the
production value, so ``Config()`` is the production configuration. Range
checks are attrs validators (so a hand-built config is checked too); their
messages are the ones the loader reports. Reading, type checking and
environment overrides live in :mod:`supervisor.config.load`.
"""

from __future__ import annotations

import re
from typing import Literal

import attrs

from actors.settings import (
    Settings,
    Validator,
    at_least,
    check,
    positive,
)
from supervisor.config.addresses import (
    SENTINEL_SCHEME,
    parse_sentinel_url,
    parse_trusted_proxies,
)

__all__ = [
    "ECHO_EXPANSION",
    "AdminConfig",
    "AuthConfig",
    "AuthMode",
    "Compression",
    "Config",
    "FailurePolicy",
    "FaultsConfig",
    "ForwardedHeader",
    "JwtAlgorithm",
    "LimitsConfig",
    "LogLevel",
    "LoggingConfig",
    "ProfileName",
    "RedisConfig",
    "ServerConfig",
    "parse_origins",
]

ProfileName = Literal["production", "staging", "ci", "dev"]
FailurePolicy = Literal["fail_open", "fail_closed"]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]
Compression = Literal["deflate", "none"]
AuthMode = Literal["query", "jwt"]
JwtAlgorithm = Literal["HS256", "RS256"]
ForwardedHeader = Literal["none", "x-forwarded-for", "forwarded"]


def _port() -> Validator:
    return check(lambda v: 0 <= v <= 65535, "must be in [0, 65535]")


def _import_path() -> Validator:
    return check(
        lambda v: v.count(":") == 1 and all(part.strip() for part in v.split(":")),
        "must be 'package.module:Name'",
    )


def _claim_list() -> Validator:
    return check(
        lambda v: (
            v == "" or all(re.fullmatch(r"[a-z_][a-z0-9_]*", c.strip()) for c in v.split(","))
        ),
        "must be claim names separated by commas (e.g. 'iat,jti')",
    )


def _ws_path() -> Validator:
    return check(lambda v: v.startswith("/"), "must start with '/'")


_ORIGIN_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^/\s,]+")


def parse_origins(text: str) -> tuple[str, ...]:
    """The allowed Origin values in ``text`` (comma-separated); () means any origin."""
    return tuple(item.strip() for item in text.split(",") if item.strip())


def _origins_ok(text: str) -> bool:
    if not text.strip():
        return True
    return all(_ORIGIN_RE.fullmatch(item.strip()) for item in text.split(","))


def _origins() -> Validator:
    return check(
        _origins_ok, "must be empty or comma-separated origins like 'https://app.example.com'"
    )


def _trusted_proxies() -> Validator:
    def valid(text: str) -> bool:
        parse_trusted_proxies(text)
        return True

    return check(valid, "must be IP addresses or CIDR networks separated by commas")


def _node_id() -> Validator:
    return check(
        lambda v: v == "" or re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", v) is not None,
        "must be empty or 1 to 64 ASCII letters, digits and . _ - (a letter or digit first)",
    )


def _redis_url() -> Validator:
    def valid(url: str) -> bool:
        if url.startswith(SENTINEL_SCHEME + "://"):
            parse_sentinel_url(url)  # its ValueError says what is wrong
            return True
        return url.split("://", 1)[0] in ("redis", "rediss", "unix") and "://" in url

    return check(valid, "must be a redis://, rediss://, unix:// or redis+sentinel:// URL")


def _key_prefix() -> Validator:
    return check(
        lambda v: re.fullmatch(r"[A-Za-z0-9._-]{1,32}", v) is not None,
        "must be 1 to 32 ASCII letters, digits and . _ -",
    )


def _not_reserved_env() -> Validator:
    return check(
        lambda v: not v.startswith("WS_SUPERVISOR_"),
        "must not start with 'WS_SUPERVISOR_' (reserved for config overrides)",
    )


@attrs.frozen
class ServerConfig:
    """The WebSocket listener. An empty ``node_id`` is generated per process.

    ``app`` is the application handler, ``package.module:Name`` (a class or a
    factory called once per connection); ``admission_timeout`` bounds the
    wait for the supervisor's answer; ``drain_timeout`` bounds a shutdown.

    Behind a load balancer (:mod:`supervisor.front.proxy`): ``trusted_proxies``
    lists the peers to believe (addresses or CIDRs, comma-separated; empty:
    none). With ``proxy_protocol`` a trusted peer must open every connection
    with a PROXY v1 or v2 header (HAProxy ``send-proxy``/``send-proxy-v2``);
    ``forwarded_header`` names the header trusted HTTP-mode proxies write
    (``x-forwarded-for`` or RFC 7239 ``forwarded``; ``none``: never read).
    The real client address then counts for the handshake limits, the logs
    and the state dump; a peer that is not trusted is its own client.
    """

    host: str = "0.0.0.0"
    port: int = attrs.field(default=8765, validator=_port())
    path: str = attrs.field(default="/ws", validator=_ws_path())
    node_id: str = attrs.field(default="", validator=_node_id())
    app: str = attrs.field(default="supervisor.front.apps:EchoApp", validator=_import_path())
    compression: Compression = "deflate"
    max_message_size: int = attrs.field(default=1_048_576, validator=at_least(1))
    admission_timeout: float = attrs.field(default=5.0, validator=positive())
    drain_timeout: float = attrs.field(default=10.0, validator=positive())
    origins: str = attrs.field(default="", validator=_origins())
    trusted_proxies: str = attrs.field(default="", validator=_trusted_proxies())
    proxy_protocol: bool = False
    forwarded_header: ForwardedHeader = "none"

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
    """How a WebSocket handshake is authenticated (see :mod:`supervisor.front.auth`).

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
    leeway: float = attrs.field(default=0.0, validator=at_least(0))
    require_exp: bool = True
    required_claims: str = attrs.field(default="", validator=_claim_list())

    @property
    def claims_required(self) -> tuple[str, ...]:
        """Every claim a token must carry: ``sub``, ``exp`` if required, then the listed ones."""
        extra = tuple(c.strip() for c in self.required_claims.split(",") if c.strip())
        return ("sub", *(("exp",) if self.require_exp else ()), *extra)


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

    ``url`` is a ``redis://``, ``rediss://`` or ``unix://`` URL, or a
    ``redis+sentinel://`` URL naming the sentinels and the master
    (:func:`parse_sentinel_url`): every connection then asks the sentinels
    where the master is. A push to users on other nodes waits up to
    ``push_timeout`` seconds for those nodes to confirm it.
    """

    url: str = attrs.field(default="redis://127.0.0.1:6379/0", validator=_redis_url())
    key_prefix: str = attrs.field(default="wss", validator=_key_prefix())
    timeout: float = attrs.field(default=0.25, validator=positive())
    lease_ttl: float = attrs.field(default=15.0, validator=at_least(0.5))
    renew_interval: float = attrs.field(default=5.0, validator=positive())
    on_unavailable: FailurePolicy = "fail_open"
    retry_interval: float = attrs.field(default=1.0, validator=positive())
    push_timeout: float = attrs.field(default=1.0, validator=positive())

    def __attrs_post_init__(self) -> None:
        if self.renew_interval * 2 > self.lease_ttl:
            raise ValueError(
                "must satisfy renew_interval * 2 <= lease_ttl (a lease survives one missed "
                f"renewal), got renew_interval={self.renew_interval!r}, "
                f"lease_ttl={self.lease_ttl!r}"
            )


ECHO_EXPANSION = 3
"""How much larger than a message its JSON echo can be: ``\\u`` escapes triple 2-byte UTF-8."""


@attrs.frozen
class LimitsConfig:
    """Limits that hold under abuse (see :mod:`supervisor.front.limits`).

    Handshakes: ``handshakes_per_second_per_address`` with bursts of
    ``handshake_burst_per_address`` from one client address (429 beyond),
    at most ``max_concurrent_handshakes`` in progress (503 beyond), each done
    within ``open_timeout`` seconds, none sending more than
    ``max_handshake_bytes`` before its upgrade (431 beyond). Per connection:
    ``messages_per_second`` inbound messages and control frames with bursts
    of ``message_burst`` (1008 beyond), at most ``max_inbound_bytes`` of
    messages waiting for a busy handler (1008 beyond), and at most
    ``max_outbound_queue`` frames and ``max_outbound_bytes`` bytes waiting to
    be written (4004 beyond). docs/SECURITY.md adds them up per connection.
    """

    handshakes_per_second_per_address: float = attrs.field(default=20.0, validator=positive())
    handshake_burst_per_address: int = attrs.field(default=40, validator=at_least(1))
    max_concurrent_handshakes: int = attrs.field(default=1000, validator=at_least(1))
    open_timeout: float = attrs.field(default=10.0, validator=positive())
    messages_per_second: float = attrs.field(default=50.0, validator=positive())
    message_burst: int = attrs.field(default=100, validator=at_least(1))
    max_outbound_queue: int = attrs.field(default=1000, validator=at_least(1))
    max_handshake_bytes: int = attrs.field(default=16384, validator=at_least(1024))
    max_inbound_bytes: int = attrs.field(default=2_097_152, validator=at_least(1024))
    max_outbound_bytes: int = attrs.field(default=4_194_304, validator=at_least(1024))


@attrs.frozen
class LoggingConfig:
    """Log level and whether lines are JSON."""

    level: LogLevel = "INFO"
    json: bool = False


@attrs.frozen
class FaultsConfig:
    """Faults a test can switch on, to prove a detector end to end; all off by default.

    ``close_under_foreign_id``: the front reports each connection's close
    under a context built anew for its user (new thread and websocket
    ids), as the seed's cleanup did, instead of the one it was admitted
    with; the tree sees a close for a connection it never admitted and
    counts a thread_id mismatch, and the connection's slot stays held until
    a sweep finds it no longer live. Refused in the production profile.
    """

    close_under_foreign_id: bool = False


@attrs.frozen
class Config(Settings):
    """A whole node configuration; ``Config()`` is production.

    The engine's sections come from :class:`actors.settings.Settings` (a
    tree is given the whole ``Config`` and reads only those); the product
    adds its own.
    """

    profile: ProfileName = "production"
    server: ServerConfig = attrs.field(factory=ServerConfig)
    admin: AdminConfig = attrs.field(factory=AdminConfig)
    auth: AuthConfig = attrs.field(factory=AuthConfig)
    redis: RedisConfig = attrs.field(factory=RedisConfig)
    limits: LimitsConfig = attrs.field(factory=LimitsConfig)
    logging: LoggingConfig = attrs.field(factory=LoggingConfig)
    faults: FaultsConfig = attrs.field(factory=FaultsConfig)

    def reloaded(self, new: Config) -> Config:
        """This config with what a reload applies live taken from ``new`` (SIGHUP).

        Quota (but its backend), thresholds, restart, cleanup, pool and the
        timeouts (but the keepalive's); every other key waits for a restart.
        """
        return attrs.evolve(
            self,
            quota=attrs.evolve(new.quota, backend=self.quota.backend),
            thresholds=new.thresholds,
            restart=new.restart,
            cleanup=new.cleanup,
            pool=new.pool,
            timeouts=attrs.evolve(
                new.timeouts,
                ping_interval=self.timeouts.ping_interval,
                ping_timeout=self.timeouts.ping_timeout,
            ),
        )

    def cross_section_problems(self) -> list[tuple[str, str]]:
        """(key path, problem) for values that contradict a value of another section."""
        problems: list[tuple[str, str]] = []
        admission, opening = self.server.admission_timeout, self.limits.open_timeout
        if admission >= opening:
            problem = (
                f"must be below limits.open_timeout ({opening:g}), got {admission:g}: "
                "a slower admission would be cut off with no HTTP answer instead of a 503"
            )
            problems.append(("server.admission_timeout", problem))
        least = ECHO_EXPANSION * self.server.max_message_size + 4096
        if self.limits.max_outbound_bytes < least:
            problem = (
                f"must be at least {least} ({ECHO_EXPANSION} x server.max_message_size + 4096), "
                f"got {self.limits.max_outbound_bytes}: the JSON echo of one message of the "
                "largest size, escaped, would close its connection with 4004"
            )
            problems.append(("limits.max_outbound_bytes", problem))
        if not self.server.trusted_proxies.strip():
            if self.server.proxy_protocol:
                problem = "needs server.trusted_proxies: the peers that send a PROXY header"
                problems.append(("server.proxy_protocol", problem))
            if self.server.forwarded_header != "none":
                problem = "needs server.trusted_proxies: the peers whose header to believe"
                problems.append(("server.forwarded_header", problem))
        if self.faults.close_under_foreign_id and self.profile == "production":
            problem = "is a test-only fault and is refused in the production profile"
            problems.append(("faults.close_under_foreign_id", problem))
        return problems
