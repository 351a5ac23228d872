"""The settings classes: production by default, every range checked on a hand-built config too."""

from __future__ import annotations

from collections.abc import Callable

import attrs
import pytest

from supervisor.config.load import load_profile
from supervisor.config.schema import (
    AdminConfig,
    AuthConfig,
    Config,
    FaultsConfig,
    LimitsConfig,
    LoggingConfig,
    RedisConfig,
    ServerConfig,
    parse_origins,
)
from supervisor.errors import ConfigError


def test_the_default_config_equals_the_production_profile() -> None:
    assert Config() == load_profile("production", env={})
    assert Config().profile == "production"


def test_the_default_config_is_made_of_each_section_s_defaults() -> None:
    config = Config()
    sections = {
        "server": ServerConfig(),
        "admin": AdminConfig(),
        "auth": AuthConfig(),
        "redis": RedisConfig(),
        "limits": LimitsConfig(),
        "logging": LoggingConfig(),
    }
    assert {name: getattr(config, name) for name in sections} == sections


def test_a_config_is_frozen() -> None:
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        Config().server.port = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: ServerConfig(port=65536), "must be in [0, 65535], got 65536"),
        (lambda: ServerConfig(port=-1), "must be in [0, 65535], got -1"),
        (lambda: ServerConfig(path="ws"), "must start with '/', got 'ws'"),
        (lambda: ServerConfig(app="supervisor.front.apps"), "must be 'package.module:Name'"),
        (lambda: ServerConfig(app="a:b:c"), "must be 'package.module:Name'"),
        (lambda: ServerConfig(node_id="-first"), "must be empty or 1 to 64 ASCII letters"),
        (lambda: ServerConfig(node_id="n" * 65), "must be empty or 1 to 64 ASCII letters"),
        (lambda: ServerConfig(max_message_size=0), "must be >= 1, got 0"),
        (lambda: ServerConfig(admission_timeout=0.0), "must be > 0, got 0.0"),
        (lambda: ServerConfig(origins="app.example.com"), "must be empty or comma-separated"),
        (lambda: ServerConfig(origins="https://a.example/x"), "must be empty or comma-separated"),
        (lambda: AdminConfig(port=70000), "must be in [0, 65535], got 70000"),
        (
            lambda: AuthConfig(secret_env="WS_SUPERVISOR_JWT"),
            "must not start with 'WS_SUPERVISOR_'",
        ),
        (lambda: AuthConfig(leeway=-1.0), "must be >= 0, got -1.0"),
        (lambda: AuthConfig(required_claims="iat;jti"), "must be claim names separated by commas"),
        (
            lambda: RedisConfig(url="http://127.0.0.1:6379"),
            "must be a redis://, rediss://, unix:// or redis+sentinel://",
        ),
        (lambda: RedisConfig(key_prefix="a:b"), "must be 1 to 32 ASCII letters, digits and . _ -"),
        (lambda: RedisConfig(key_prefix=""), "must be 1 to 32 ASCII letters, digits and . _ -"),
        (lambda: RedisConfig(lease_ttl=0.4, renew_interval=0.1), "must be >= 0.5, got 0.4"),
        (lambda: LimitsConfig(message_burst=0), "must be >= 1, got 0"),
        (lambda: LimitsConfig(open_timeout=-2.0), "must be > 0, got -2.0"),
    ],
)
def test_a_hand_built_section_out_of_range_is_refused_as_the_loader_words_it(
    build: Callable[[], object], message: str
) -> None:
    with pytest.raises(ValueError) as caught:
        build()
    assert str(caught.value).startswith(message)


def test_a_lease_that_would_not_survive_one_missed_renewal_is_refused_naming_both_values() -> None:
    with pytest.raises(ValueError, match=r"renew_interval \* 2 <= lease_ttl") as caught:
        RedisConfig(lease_ttl=15.0, renew_interval=7.6)
    assert "renew_interval=7.6, lease_ttl=15.0" in str(caught.value)
    assert RedisConfig(lease_ttl=15.0, renew_interval=7.5).renew_interval == 7.5


def test_the_production_config_has_no_cross_section_problem() -> None:
    assert Config().cross_section_problems() == []


@pytest.mark.parametrize(("admission", "opening"), [(10.0, 10.0), (12.0, 10.0)])
def test_an_admission_timeout_not_below_the_open_timeout_is_a_cross_section_problem(
    admission: float, opening: float
) -> None:
    config = Config(
        server=ServerConfig(admission_timeout=admission),
        limits=LimitsConfig(open_timeout=opening),
    )  # each section is in range on its own: the constructor accepts it
    [(path, problem)] = config.cross_section_problems()
    assert path == "server.admission_timeout"
    assert problem.startswith(f"must be below limits.open_timeout ({opening:g}), got {admission:g}")


def test_an_outbound_budget_too_small_for_the_echo_of_the_largest_message_is_a_problem() -> None:
    least = 3 * 1_048_576 + 4096
    short = Config(limits=LimitsConfig(max_outbound_bytes=least - 1))
    [(path, problem)] = short.cross_section_problems()
    assert path == "limits.max_outbound_bytes"
    assert problem.startswith(f"must be at least {least} (3 x server.max_message_size + 4096)")
    assert Config(limits=LimitsConfig(max_outbound_bytes=least)).cross_section_problems() == []
    small = Config(
        server=ServerConfig(max_message_size=1000), limits=LimitsConfig(max_outbound_bytes=7096)
    )
    assert small.cross_section_problems() == []


def test_every_cross_section_problem_is_reported_at_once() -> None:
    config = Config(
        server=ServerConfig(admission_timeout=20.0), limits=LimitsConfig(max_outbound_bytes=1024)
    )
    paths = [path for path, _ in config.cross_section_problems()]
    assert paths == ["server.admission_timeout", "limits.max_outbound_bytes"]


def test_a_test_only_fault_is_refused_in_the_production_profile_naming_its_key() -> None:
    config = Config(faults=FaultsConfig(close_under_foreign_id=True))
    assert config.cross_section_problems() == [
        (
            "faults.close_under_foreign_id",
            "is a test-only fault and is refused in the production profile",
        )
    ]


@pytest.mark.parametrize("profile", ["staging", "ci", "dev"])
def test_a_test_only_fault_may_be_switched_on_outside_production(profile: str) -> None:
    faults = FaultsConfig(close_under_foreign_id=True)
    config = attrs.evolve(load_profile(profile, env={}), faults=faults)
    assert config.cross_section_problems() == []


def test_no_fault_is_on_in_any_profile() -> None:
    for profile in ("production", "staging", "ci", "dev"):
        assert load_profile(profile, env={}).faults == FaultsConfig()


def test_the_fault_from_the_environment_is_refused_in_production_by_the_loader() -> None:
    with pytest.raises(ConfigError) as caught:
        load_profile("production", env={"WS_SUPERVISOR_FAULTS_CLOSE_UNDER_FOREIGN_ID": "true"})
    assert [issue.path for issue in caught.value.issues] == ["faults.close_under_foreign_id"]


def test_origins_are_split_on_commas_and_empty_means_any_origin() -> None:
    assert parse_origins(" https://a.example , ,http://b.example:8080 ") == (
        "https://a.example",
        "http://b.example:8080",
    )
    assert parse_origins("") == ()
    assert ServerConfig().allowed_origins is None
    assert ServerConfig(origins="https://a.example").allowed_origins == ("https://a.example",)


def test_the_claims_required_are_sub_then_exp_if_required_then_the_listed_ones() -> None:
    assert AuthConfig().claims_required == ("sub", "exp")
    assert AuthConfig(require_exp=False, required_claims="iat, jti").claims_required == (
        "sub",
        "iat",
        "jti",
    )


def test_a_reload_takes_the_live_sections_and_keeps_everything_else() -> None:
    running = load_profile("ci", env={})
    edited = attrs.evolve(
        running,
        quota=attrs.evolve(running.quota, max_managers_per_user=9, backend="redis"),
        timeouts=attrs.evolve(running.timeouts, idle_timeout=5.0, ping_interval=9.0),
        server=attrs.evolve(running.server, port=1),
        pool=attrs.evolve(running.pool, size=1),
    )
    live = running.reloaded(edited)
    assert live.quota.max_managers_per_user == 9 and live.pool.size == 1
    assert live.timeouts.idle_timeout == 5.0
    assert live.quota.backend == running.quota.backend  # waits for a restart
    assert live.timeouts.ping_interval == running.timeouts.ping_interval
    assert live.server == running.server
