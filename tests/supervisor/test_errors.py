"""The product's exceptions: one tree under WsSupervisorError, and what each one says."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

import supervisor
from actors.errors import WsSupervisorError
from supervisor.errors import AuthError, ConfigError, ConfigIssue, ForcedExit, FrameError


def product_exceptions() -> list[type[BaseException]]:
    """Every exception class a module of the product defines (its own, not its imports)."""
    found: list[type[BaseException]] = []
    for info in pkgutil.walk_packages(supervisor.__path__, "supervisor."):
        module = importlib.import_module(info.name)
        found += [
            value
            for _, value in inspect.getmembers(module, inspect.isclass)
            if issubclass(value, BaseException) and value.__module__ == module.__name__
        ]
    return found


def test_every_exception_the_product_defines_derives_from_ws_supervisor_error() -> None:
    defined = product_exceptions()
    assert {AuthError, ConfigError, ForcedExit, FrameError} <= set(defined)
    assert [e.__qualname__ for e in defined if not issubclass(e, WsSupervisorError)] == []


def test_a_config_issue_reads_as_its_path_then_its_problem() -> None:
    issue = ConfigIssue("quota.max_managers_per_user (WS_SUPERVISOR_QUOTA_MAX)", "must be >= 1")
    assert str(issue) == "quota.max_managers_per_user (WS_SUPERVISOR_QUOTA_MAX): must be >= 1"


def test_a_config_error_names_its_source_counts_and_lists_every_issue_with_its_path() -> None:
    issues = [
        ConfigIssue("quota.policy", "must be one of 'reject', 'evict_oldest_idle'"),
        ConfigIssue("logging.json", "must be a boolean, got a string"),
        ConfigIssue("nope", "unknown section"),
    ]
    error = ConfigError(issues, "node.toml")
    assert str(error).splitlines() == [
        "node.toml: 3 problem(s)",
        "  quota.policy: must be one of 'reject', 'evict_oldest_idle'",
        "  logging.json: must be a boolean, got a string",
        "  nope: unknown section",
    ]
    assert error.issues == tuple(issues)
    assert error.source == "node.toml"


def test_a_config_error_without_a_source_says_config() -> None:
    error = ConfigError([ConfigIssue("server.port", "must be in [0, 65535]")])
    assert str(error) == "config: 1 problem(s)\n  server.port: must be in [0, 65535]"


def test_an_auth_error_keeps_its_short_reason_for_the_401_body() -> None:
    error = AuthError("token expired")
    assert error.reason == "token expired"
    assert str(error) == "authentication failed: token expired"


def test_a_frame_error_carries_a_machine_readable_code_and_a_message() -> None:
    with pytest.raises(WsSupervisorError) as caught:
        raise FrameError("invalid_json", "not valid JSON")
    assert isinstance(caught.value, FrameError)
    assert (caught.value.code, caught.value.message) == ("invalid_json", "not valid JSON")


def test_a_forced_exit_is_caught_as_a_ws_supervisor_error() -> None:
    with pytest.raises(WsSupervisorError):
        raise ForcedExit
