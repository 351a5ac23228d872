"""Unit tests of the configuration: schema defaults, profiles, strictness, env overrides."""

from __future__ import annotations

import tomllib
from pathlib import Path

import attrs
import pytest

from actors.settings import QuotaConfig, ThresholdsConfig
from supervisor.config.load import (
    PROFILES,
    check_config_file,
    config_to_dict,
    load_config,
    load_profile,
    parse_config,
    profile_path,
)
from supervisor.config.schema import Config
from supervisor.daemon import restart_only_changes
from supervisor.errors import ConfigError, ConfigIssue
from tests.helpers import make_config

__all__: list[str] = []


def issues_of(data: dict[str, object], env: dict[str, str] | None = None) -> list[ConfigIssue]:
    with pytest.raises(ConfigError) as caught:
        parse_config(data, env=env)
    return list(caught.value.issues)


def paths_of(data: dict[str, object], env: dict[str, str] | None = None) -> set[str]:
    return {issue.path for issue in issues_of(data, env)}


def the_issue(data: dict[str, object], env: dict[str, str] | None = None) -> ConfigIssue:
    issues = issues_of(data, env)
    assert len(issues) == 1, issues
    return issues[0]


# --- defaults and profiles ----------------------------------------------------


def test_an_empty_document_gives_the_defaults() -> None:
    assert parse_config({}) == Config()


def test_the_defaults_equal_the_production_profile() -> None:
    assert load_profile("production", env={}) == Config()


def test_loading_no_file_gives_the_defaults() -> None:
    assert load_config(None, env={}) == Config()


def test_the_production_profile_has_the_spec_values() -> None:
    config = load_profile("production", env={})
    assert config.profile == "production"
    assert config.server.host == "0.0.0.0"
    assert config.cleanup.emergency_cleanup_timeout == 15.0
    assert config.cleanup.background_interval == 120.0
    assert config.quota.max_managers_per_user == 20
    assert config.timeouts.tick_interval == 0.5


def test_the_staging_profile_has_the_spec_values() -> None:
    config = load_profile("staging", env={})
    assert config.profile == "staging"
    assert config.server.host == "0.0.0.0"
    assert config.cleanup.emergency_cleanup_timeout == 5.0
    assert config.cleanup.background_interval == 30.0
    assert config.quota.max_managers_per_user == 10
    assert config.timeouts.tick_interval == 0.5


def test_the_ci_profile_has_the_spec_values() -> None:
    config = load_profile("ci", env={})
    assert config.profile == "ci"
    assert config.cleanup.emergency_cleanup_timeout == 1.0
    assert config.cleanup.background_interval == 5.0
    assert config.cleanup.empty_supervisor_ttl == 2.0
    assert config.quota.max_managers_per_user == 5
    assert (config.server.port, config.admin.port) == (8765, 8766)
    assert config.timeouts.ping_interval == 1.0
    assert config.timeouts.ping_timeout == 1.0
    assert config.timeouts.idle_timeout == 30.0
    assert config.timeouts.tick_interval == 0.1
    assert config.pool.idle_seconds == 2.0


def test_the_dev_profile_is_production_on_loopback() -> None:
    config = load_profile("dev", env={})
    production = load_profile("production", env={})
    assert config.profile == "dev"
    assert config.server.host == "127.0.0.1"
    assert config.auth.mode == "query"
    as_production = parse_config(
        {
            **config_to_dict(config),
            "profile": "production",
            "server": config_to_dict(production)["server"],
            "auth": config_to_dict(production)["auth"],
        }
    )
    assert as_production == production


@pytest.mark.parametrize("name", PROFILES)
def test_every_profile_shares_the_common_spec_values(name: str) -> None:
    config = load_profile(name, env={})
    assert config.profile == name
    assert config.admin.host == "127.0.0.1"
    assert (config.thresholds.warning, config.thresholds.critical) == (0.5, 0.8)
    assert config.thresholds.emergency == 0.9
    assert config.quota.proactive_cleanup_ratio == 0.5
    assert config.quota.node_max_managers == 10000
    assert (config.restart.max_restarts, config.restart.within_seconds) == (3, 10.0)


@pytest.mark.parametrize("name", PROFILES)
def test_every_profile_file_spells_out_every_key(name: str) -> None:
    written = tomllib.loads(profile_path(name).read_text(encoding="utf-8"))
    expected = config_to_dict(Config())
    assert written.keys() == expected.keys()
    for section, table in expected.items():
        if isinstance(table, dict):
            assert written[section].keys() == table.keys(), section


def test_an_unknown_profile_name_is_an_error_listing_the_profiles() -> None:
    with pytest.raises(ConfigError) as caught:
        profile_path("prod")
    assert "production, staging, ci, dev" in str(caught.value)


# --- strictness ---------------------------------------------------------------


def test_an_unknown_top_level_key_is_rejected() -> None:
    assert the_issue({"colour": "blue"}) == ConfigIssue("colour", "unknown key")


def test_an_unknown_key_in_a_section_is_rejected_with_its_path() -> None:
    issue = the_issue({"quota": {"max_manager_per_user": 5}})
    assert str(issue) == "quota.max_manager_per_user: unknown key"


def test_a_string_false_is_not_accepted_as_a_bool() -> None:
    issue = the_issue({"logging": {"json": "false"}})
    assert issue.path == "logging.json"
    assert "boolean" in issue.message


@pytest.mark.parametrize("value", [20.9, 20.0, True, "20"])
def test_an_int_field_accepts_only_a_real_int(value: object) -> None:
    issue = the_issue({"quota": {"max_managers_per_user": value}})
    assert issue.path == "quota.max_managers_per_user"
    assert issue.message.startswith("expected an integer")


@pytest.mark.parametrize("value", [True, "1.5", float("nan"), float("inf")])
def test_a_float_field_rejects_bools_strings_and_non_finite_numbers(value: object) -> None:
    assert the_issue({"restart": {"within_seconds": value}}).path == "restart.within_seconds"


def test_a_float_field_accepts_an_int_and_stores_a_float() -> None:
    config = parse_config({"restart": {"within_seconds": 7}})
    assert config.restart.within_seconds == 7.0
    assert type(config.restart.within_seconds) is float


def test_a_literal_field_lists_the_allowed_values() -> None:
    issue = the_issue({"quota": {"policy": "evict"}})
    assert issue.path == "quota.policy"
    assert "'reject', 'evict_oldest_idle'" in issue.message


def test_a_section_that_is_not_a_table_is_an_error_at_the_section() -> None:
    assert the_issue({"pool": 3}).path == "pool"


def test_a_document_that_is_not_a_table_is_an_error_at_the_root() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config([1, 2])  # type: ignore[arg-type]
    assert [i.path for i in caught.value.issues] == ["<root>"]


@pytest.mark.parametrize(
    ("section", "key", "value", "reason"),
    [
        ("quota", "max_managers_per_user", 0, "must be >= 1, got 0"),
        ("quota", "node_max_managers", -5, "must be >= 1, got -5"),
        ("quota", "proactive_cleanup_ratio", 0.0, "must be in (0, 1], got 0.0"),
        ("server", "port", 65536, "must be in [0, 65535], got 65536"),
        ("admin", "port", -1, "must be in [0, 65535], got -1"),
        ("server", "path", "ws", "must start with '/', got 'ws'"),
        ("thresholds", "critical", 1.5, "must be in (0, 1], got 1.5"),
        ("restart", "max_restarts", -1, "must be >= 0, got -1"),
        ("restart", "within_seconds", 0, "must be > 0, got 0"),
        ("cleanup", "empty_supervisor_ttl", -0.5, "must be >= 0, got -0.5"),
        ("pool", "size", -1, "must be >= 0, got -1"),
        ("timeouts", "tick_interval", 61, "must be in (0, 60], got 61"),
    ],
)
def test_an_out_of_range_value_is_reported_with_the_reason(
    section: str, key: str, value: object, reason: str
) -> None:
    assert the_issue({section: {key: value}}) == ConfigIssue(f"{section}.{key}", reason)


def test_thresholds_out_of_order_are_reported_at_the_section() -> None:
    issue = the_issue({"thresholds": {"warning": 0.8, "critical": 0.8}})
    assert issue.path == "thresholds"
    assert "warning < critical < emergency" in issue.message


def test_thresholds_out_of_order_are_refused_when_built_by_hand() -> None:
    with pytest.raises(ValueError, match="warning < critical"):
        ThresholdsConfig(warning=0.95)


def test_a_range_check_applies_when_built_by_hand() -> None:
    with pytest.raises(ValueError, match="must be >= 1, got 0"):
        QuotaConfig(max_managers_per_user=0)


def test_several_problems_are_reported_at_once() -> None:
    data: dict[str, object] = {
        "profile": "prod",
        "typo": 1,
        "quota": {"max_managers_per_user": "20", "policy": "reject", "extra": True},
        "logging": {"json": "false", "level": "TRACE"},
        "thresholds": {"warning": 0.9},
        "server": {"port": 70000},
        "pool": [],
    }
    assert paths_of(data) == {
        "profile",
        "typo",
        "quota.max_managers_per_user",
        "quota.extra",
        "logging.json",
        "logging.level",
        "thresholds",
        "server.port",
        "pool",
    }


def test_the_error_text_lists_every_issue_on_its_own_line() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({"a": 1, "b": 2}, source="here.toml")
    lines = str(caught.value).splitlines()
    assert lines[0] == "here.toml: 2 problem(s)"
    assert [line.strip() for line in lines[1:]] == ["a: unknown key", "b: unknown key"]
    assert "Traceback" not in str(caught.value)


# --- environment overrides ----------------------------------------------------


def test_env_overrides_apply_by_section_and_key() -> None:
    env = {
        "WS_SUPERVISOR_QUOTA_MAX_MANAGERS_PER_USER": "30",
        "WS_SUPERVISOR_SERVER_PORT": "9000",
        "WS_SUPERVISOR_LOGGING_JSON": "TRUE",
        "WS_SUPERVISOR_PROFILE": "ci",
        "WS_SUPERVISOR_RESTART_WITHIN_SECONDS": "2.5",
        "WS_SUPERVISOR_SERVER_NODE_ID": "",
        "OTHER_VARIABLE": "ignored",
    }
    config = parse_config({}, env=env)
    assert config.quota.max_managers_per_user == 30
    assert config.server.port == 9000
    assert config.logging.json is True
    assert config.profile == "ci"
    assert config.restart.within_seconds == 2.5


def test_an_env_override_beats_the_file(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[quota]\nmax_managers_per_user = 7\npolicy = 'reject'\n", encoding="utf-8")
    env = {"WS_SUPERVISOR_QUOTA_MAX_MANAGERS_PER_USER": "30"}
    config = load_config(path, env=env)
    assert config.quota.max_managers_per_user == 30
    assert config.quota.policy == "reject"


def test_load_config_reads_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WS_SUPERVISOR_POOL_SIZE", "9")
    assert load_config(None).pool.size == 9


def test_a_bad_env_value_names_the_variable() -> None:
    issue = the_issue({}, env={"WS_SUPERVISOR_QUOTA_MAX_MANAGERS_PER_USER": "2x"})
    assert str(issue) == (
        "quota.max_managers_per_user (WS_SUPERVISOR_QUOTA_MAX_MANAGERS_PER_USER): "
        "expected an integer, got '2x'"
    )


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("WS_SUPERVISOR_POOL_SIZE", "4.0"),
        ("WS_SUPERVISOR_POOL_SIZE", " 4"),
        ("WS_SUPERVISOR_POOL_IDLE_SECONDS", "nan"),
        ("WS_SUPERVISOR_POOL_IDLE_SECONDS", "inf"),
        ("WS_SUPERVISOR_POOL_IDLE_SECONDS", "1e999"),
        ("WS_SUPERVISOR_LOGGING_JSON", "yes"),
        ("WS_SUPERVISOR_LOGGING_LEVEL", "info"),
    ],
)
def test_an_unparsable_env_value_is_an_issue_naming_the_variable(name: str, value: str) -> None:
    assert f"({name})" in the_issue({}, env={name: value}).path


def test_an_out_of_range_env_value_names_the_variable() -> None:
    issue = the_issue({}, env={"WS_SUPERVISOR_SERVER_PORT": "70000"})
    assert issue.path == "server.port (WS_SUPERVISOR_SERVER_PORT)"


def test_an_unknown_ws_supervisor_variable_is_reported() -> None:
    issue = the_issue({}, env={"WS_SUPERVISOR_QUOTA_MAX_MANAGER_PER_USER": "5"})
    assert issue.path == "WS_SUPERVISOR_QUOTA_MAX_MANAGER_PER_USER"
    assert "max_manager_per_user" in issue.message


def test_a_variable_matching_no_section_is_reported() -> None:
    assert paths_of({}, env={"WS_SUPERVISOR_NOPE": "1"}) == {"WS_SUPERVISOR_NOPE"}


# --- files ----------------------------------------------------------------------


def test_bad_toml_syntax_is_one_issue_at_file_with_the_position(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[quota\nmax = 1\n", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    (issue,) = caught.value.issues
    assert issue.path == "<file>"
    assert "line 1" in issue.message


def test_a_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "absent.toml"
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    (issue,) = caught.value.issues
    assert issue == ConfigIssue("<file>", f"no such file: {path}")


def test_a_file_that_is_not_utf8_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes(b"profile = '\xe9'\n")
    assert [i.path for i in check_config_file(path)] == ["<file>"]


def test_check_config_file_returns_nothing_for_a_good_file() -> None:
    assert check_config_file(profile_path("staging")) == []


def test_check_config_file_returns_every_issue(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("x = 1\n[pool]\nsize = -1\n", encoding="utf-8")
    assert {i.path for i in check_config_file(path)} == {"x", "pool.size"}


# --- plain data -------------------------------------------------------------------


@pytest.mark.parametrize("name", PROFILES)
def test_config_to_dict_round_trips_through_parse_config(name: str) -> None:
    config = load_profile(name, env={})
    assert parse_config(config_to_dict(config)) == config


def test_config_to_dict_is_plain_data() -> None:
    data = config_to_dict(Config())
    quota = data["quota"]
    assert isinstance(quota, dict)
    assert quota["max_managers_per_user"] == 20
    assert data["profile"] == "production"


# --- the Redis ledger's settings --------------------------------------------------


def test_the_redis_backend_and_url_can_be_set_from_the_environment() -> None:
    env = {
        "WS_SUPERVISOR_QUOTA_BACKEND": "redis",
        "WS_SUPERVISOR_REDIS_URL": "redis://10.0.0.5:6380/2",
        "WS_SUPERVISOR_REDIS_ON_UNAVAILABLE": "fail_closed",
    }
    config = parse_config({}, env=env)
    assert config.quota.backend == "redis"
    assert config.redis.url == "redis://10.0.0.5:6380/2"
    assert config.redis.on_unavailable == "fail_closed"


def test_an_unknown_quota_backend_is_named_with_its_choices() -> None:
    issue = the_issue({"quota": {"backend": "etcd"}})
    assert issue.path == "quota.backend"
    assert "'memory'" in issue.message and "'redis'" in issue.message


@pytest.mark.parametrize(
    ("table", "path", "fragment"),
    [
        ({"url": "http://cache:6379"}, "redis.url", "redis://"),
        ({"timeout": 0}, "redis.timeout", "> 0"),
        ({"on_unavailable": "retry"}, "redis.on_unavailable", "fail_open"),
        ({"key_prefix": "a b"}, "redis.key_prefix", "letters"),
        ({"lease_ttl": 3.0, "renew_interval": 2.0}, "redis", "renew_interval * 2 <= lease_ttl"),
        ({"url": "redis+sentinel://s1:26379"}, "redis.url", "names no master"),
        ({"url": "redis+sentinel://s1:99999/m"}, "redis.url", "'s1:99999' has a bad port"),
        ({"push_timeout": 0}, "redis.push_timeout", "> 0"),
    ],
)
def test_a_bad_redis_setting_names_its_key(
    table: dict[str, object], path: str, fragment: str
) -> None:
    issue = the_issue({"redis": table})
    assert issue.path == path
    assert fragment in issue.message


def test_a_sentinel_url_is_accepted_from_the_environment() -> None:
    url = "redis+sentinel://10.0.0.1:26379,10.0.0.2:26379/ws-ledger/0"
    config = parse_config({}, env={"WS_SUPERVISOR_REDIS_URL": url})
    assert config.redis.url == url


@pytest.mark.parametrize(
    ("table", "path", "fragment"),
    [
        ({"trusted_proxies": "10.0.0.0/8, lb.local"}, "server.trusted_proxies", "'lb.local'"),
        ({"forwarded_header": "x-real-ip"}, "server.forwarded_header", "'x-forwarded-for'"),
        ({"proxy_protocol": True}, "server.proxy_protocol", "needs server.trusted_proxies"),
        ({"forwarded_header": "forwarded"}, "server.forwarded_header", "needs server.trusted"),
    ],
)
def test_a_bad_proxy_setting_names_its_key(
    table: dict[str, object], path: str, fragment: str
) -> None:
    issue = the_issue({"server": table})
    assert issue.path == path
    assert fragment in issue.message


def test_trusted_proxies_with_the_proxy_protocol_and_a_header_are_accepted() -> None:
    server = parse_config(
        {
            "server": {
                "trusted_proxies": "127.0.0.9, 10.0.0.0/8",
                "proxy_protocol": True,
                "forwarded_header": "x-forwarded-for",
            }
        }
    ).server
    assert (server.proxy_protocol, server.forwarded_header) == (True, "x-forwarded-for")


def test_a_node_id_may_not_hold_a_separator_of_the_ledger_records() -> None:
    issue = the_issue({"server": {"node_id": "node\t1"}})
    assert issue.path == "server.node_id"
    assert (
        parse_config({"server": {"node_id": "eu-west.node-3"}}).server.node_id == "eu-west.node-3"
    )


@pytest.mark.parametrize("name", PROFILES)
def test_every_profile_gives_a_lease_that_outlives_a_missed_renewal(name: str) -> None:
    redis = load_profile(name, env={}).redis
    assert redis.renew_interval * 2 <= redis.lease_ttl
    assert redis.timeout < redis.renew_interval


def test_an_admission_timeout_not_below_the_open_timeout_is_refused_naming_both_keys() -> None:
    issue = the_issue({"server": {"admission_timeout": 5.0}, "limits": {"open_timeout": 5.0}})
    assert issue.path == "server.admission_timeout"
    assert "limits.open_timeout (5)" in issue.message and "503" in issue.message
    config = parse_config({"server": {"admission_timeout": 4.9}, "limits": {"open_timeout": 5.0}})
    assert config.server.admission_timeout == 4.9


def test_an_admission_timeout_from_the_environment_is_checked_against_the_file() -> None:
    env = {"WS_SUPERVISOR_SERVER_ADMISSION_TIMEOUT": "3"}
    with pytest.raises(ConfigError) as caught:
        parse_config({"limits": {"open_timeout": 2.0}}, env=env)
    assert [issue.path for issue in caught.value.issues] == ["server.admission_timeout"]


@pytest.mark.parametrize("name", PROFILES)
def test_every_profile_answers_an_admission_before_the_handshake_times_out(name: str) -> None:
    config = load_profile(name, env={})
    assert config.server.admission_timeout < config.limits.open_timeout


def test_a_reload_names_every_changed_setting_that_it_did_not_apply() -> None:
    running = make_config()
    reloaded = make_config(
        {
            "quota": {"max_managers_per_user": 7},
            "server": {"port": 9999},
            "logging": {"level": "DEBUG"},
        }
    )
    applied = attrs.evolve(running, quota=reloaded.quota)  # what a reload puts in place
    assert restart_only_changes(applied, reloaded) == ["logging.level", "server.port"]
    assert restart_only_changes(reloaded, reloaded) == []
