"""The engine's settings: production defaults, and range checks worded as the loader reports."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import attrs
import pytest

from actors.settings import (
    CleanupConfig,
    PoolConfig,
    QuotaConfig,
    RestartConfig,
    Settings,
    ThresholdsConfig,
    TimeoutsConfig,
    at_least,
    check,
    positive,
    ratio,
    threshold_order_problem,
)
from supervisor.config.load import config_to_dict, load_profile, parse_config
from supervisor.errors import ConfigError, ConfigIssue

README = Path(__file__).resolve().parents[2] / "README.md"

SECTIONS: dict[str, type[Any]] = {
    "quota": QuotaConfig,
    "thresholds": ThresholdsConfig,
    "restart": RestartConfig,
    "cleanup": CleanupConfig,
    "pool": PoolConfig,
    "timeouts": TimeoutsConfig,
}

OUT_OF_RANGE = [
    ("quota", "max_managers_per_user", 0, "must be >= 1, got 0"),
    ("quota", "node_max_managers", -5, "must be >= 1, got -5"),
    ("quota", "proactive_cleanup_ratio", 0.0, "must be in (0, 1], got 0.0"),
    ("quota", "proactive_cleanup_ratio", 1.5, "must be in (0, 1], got 1.5"),
    ("thresholds", "warning", 0.0, "must be in (0, 1], got 0.0"),
    ("thresholds", "emergency", 1.01, "must be in (0, 1], got 1.01"),
    ("thresholds", "shed_min_idle", -1.0, "must be >= 0, got -1.0"),
    ("restart", "max_restarts", -1, "must be >= 0, got -1"),
    ("restart", "within_seconds", 0.0, "must be > 0, got 0.0"),
    ("cleanup", "emergency_cleanup_timeout", 0.0, "must be > 0, got 0.0"),
    ("cleanup", "background_interval", -1.0, "must be > 0, got -1.0"),
    ("cleanup", "empty_supervisor_ttl", -0.5, "must be >= 0, got -0.5"),
    ("pool", "size", -1, "must be >= 0, got -1"),
    ("pool", "idle_seconds", -1.0, "must be >= 0, got -1.0"),
    ("timeouts", "ping_interval", 0.0, "must be > 0, got 0.0"),
    ("timeouts", "ping_timeout", -1.0, "must be > 0, got -1.0"),
    ("timeouts", "idle_timeout", 0.0, "must be > 0, got 0.0"),
    ("timeouts", "tick_interval", 0.0, "must be in (0, 60], got 0.0"),
    ("timeouts", "tick_interval", 60.5, "must be in (0, 60], got 60.5"),
]


def loader_issues(section: str, values: dict[str, Any]) -> list[ConfigIssue]:
    """The issues the product's loader reports for the ci profile with ``values`` in ``section``."""
    document = config_to_dict(load_profile("ci", env={}))
    table = document[section]
    assert isinstance(table, dict)
    document[section] = {**table, **values}
    with pytest.raises(ConfigError) as caught:
        parse_config(document)
    return list(caught.value.issues)


@pytest.mark.parametrize(("section", "key", "value", "message"), OUT_OF_RANGE)
def test_an_out_of_range_value_is_refused_with_the_message_the_loader_reports(
    section: str, key: str, value: Any, message: str
) -> None:
    with pytest.raises(ValueError) as caught:
        SECTIONS[section](**{key: value})
    assert str(caught.value) == message
    assert loader_issues(section, {key: value}) == [ConfigIssue(f"{section}.{key}", message)]


def test_thresholds_out_of_order_are_refused_with_the_message_the_loader_reports() -> None:
    message = threshold_order_problem(0.8, 0.5, 0.9)
    assert message is not None and "warning < critical < emergency" in message
    with pytest.raises(ValueError) as caught:
        ThresholdsConfig(warning=0.8, critical=0.5)
    assert str(caught.value) == message
    issues = loader_issues("thresholds", {"warning": 0.8, "critical": 0.5, "emergency": 0.9})
    assert issues == [ConfigIssue("thresholds", message)]


@pytest.mark.parametrize(
    ("warning", "critical", "emergency"),
    [(0.5, 0.5, 0.9), (0.5, 0.8, 0.8), (0.9, 0.8, 0.5)],
)
def test_thresholds_must_rise_strictly(warning: float, critical: float, emergency: float) -> None:
    assert threshold_order_problem(warning, critical, emergency) is not None
    assert threshold_order_problem(0.5, 0.8, 0.9) is None


@pytest.mark.parametrize(
    ("section", "values"),
    [
        ("quota", {"max_managers_per_user": 1, "proactive_cleanup_ratio": 1.0}),
        ("thresholds", {"warning": 0.1, "critical": 0.2, "emergency": 1.0, "shed_min_idle": 0}),
        ("restart", {"max_restarts": 0, "within_seconds": 0.001}),
        ("cleanup", {"empty_supervisor_ttl": 0.0}),
        ("pool", {"size": 0, "idle_seconds": 0.0}),
        ("timeouts", {"tick_interval": 60.0}),
    ],
)
def test_the_edges_of_each_range_are_accepted(section: str, values: dict[str, Any]) -> None:
    built = SECTIONS[section](**values)
    assert {key: getattr(built, key) for key in values} == values


def test_a_validator_names_the_requirement_and_the_value_it_got() -> None:
    even = check(lambda v: v % 2 == 0, "must be even")
    field = attrs.fields(PoolConfig).size
    even(None, field, 4)
    with pytest.raises(ValueError, match=r"^must be even, got 3$"):
        even(None, field, 3)
    with pytest.raises(ValueError, match=r"^must be >= 2.5, got 2$"):
        at_least(2.5)(None, field, 2)
    with pytest.raises(ValueError, match=r"^must be > 0, got 'x'$"):
        check(lambda v: v == 1, "must be > 0")(None, field, "x")
    positive()(None, field, 1e-9)
    ratio()(None, field, 1)


def test_the_defaults_are_the_production_row_of_the_readme() -> None:
    row = re.search(r"^\| production \| (\d+) \| (\d+) s \| (\d+) s \|$", README.read_text(), re.M)
    assert row is not None
    settings = Settings()
    assert settings.quota.max_managers_per_user == int(row[1])
    assert settings.cleanup.emergency_cleanup_timeout == float(row[2])
    assert settings.cleanup.background_interval == float(row[3])


def test_the_defaults_are_the_production_profiles_values() -> None:
    production = load_profile("production", env={})
    for section in SECTIONS:
        assert getattr(Settings(), section) == getattr(production, section), section


def test_settings_cannot_be_changed_once_built() -> None:
    settings = Settings()
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        settings.quota.max_managers_per_user = 99  # type: ignore[misc]
    assert attrs.evolve(settings.quota, max_managers_per_user=99).max_managers_per_user == 99
