"""Every key's kind, read off the schema, and the variables that override keys (pure)."""

from __future__ import annotations

import pytest

from supervisor.config.keys import SECTION_FIELDS, SECTIONS, TOP_FIELDS, apply_env, read_env
from supervisor.config.schema import ServerConfig

pytestmark = pytest.mark.timeout(10)


def test_a_keys_kind_is_read_off_the_schema_with_a_literals_values_as_its_choices() -> None:
    assert SECTIONS["server"] is ServerConfig
    assert SECTION_FIELDS["server"]["port"].kind == "int"
    assert SECTION_FIELDS["server"]["proxy_protocol"].kind == "bool"
    compression = SECTION_FIELDS["server"]["compression"]
    assert (compression.kind, compression.choices) == ("choice", ("deflate", "none"))
    assert "server" not in TOP_FIELDS  # a section is not a top-level key


def test_each_variable_set_is_parsed_to_its_keys_kind_and_named_with_it() -> None:
    overrides, issues = read_env(
        {
            "WS_SUPERVISOR_SERVER_PORT": "9000",
            "WS_SUPERVISOR_SERVER_PROXY_PROTOCOL": "False",
            "WS_SUPERVISOR_SERVER_ADMISSION_TIMEOUT": "2.5",
            "HOME": "/root",  # not ours: ignored
        }
    )
    assert issues == []
    assert overrides == {
        ("server", "port"): (9000, "WS_SUPERVISOR_SERVER_PORT"),
        ("server", "proxy_protocol"): (False, "WS_SUPERVISOR_SERVER_PROXY_PROTOCOL"),
        ("server", "admission_timeout"): (2.5, "WS_SUPERVISOR_SERVER_ADMISSION_TIMEOUT"),
    }


@pytest.mark.parametrize(
    ("name", "raw", "reason"),
    [
        ("WS_SUPERVISOR_SERVER_PORT", "20.0", "expected an integer, got '20.0'"),
        ("WS_SUPERVISOR_SERVER_PROXY_PROTOCOL", "no", "expected true or false, got 'no'"),
        ("WS_SUPERVISOR_SERVER_ADMISSION_TIMEOUT", "1e400", "expected a finite number"),
    ],
)
def test_a_value_not_of_its_keys_kind_is_an_issue_naming_the_key_path_and_variable(
    name: str, raw: str, reason: str
) -> None:
    overrides, issues = read_env({name: raw})
    assert overrides == {}
    [issue] = issues
    key = name.removeprefix("WS_SUPERVISOR_SERVER_").lower()
    assert issue.path == f"server.{key} ({name})"
    assert reason in issue.message


def test_a_variable_naming_no_key_is_an_issue_that_says_which_section_lacks_it() -> None:
    _, issues = read_env({"WS_SUPERVISOR_SERVER_PROT": "1", "WS_SUPERVISOR_NOPE": "1"})
    assert [(issue.path, issue.message) for issue in issues] == [
        ("WS_SUPERVISOR_NOPE", "unknown setting: matches no section or key"),
        ("WS_SUPERVISOR_SERVER_PROT", "unknown setting: section [server] has no key 'prot'"),
    ]


def test_overrides_are_laid_over_the_document_keeping_the_sections_other_keys() -> None:
    server: dict[str, object] = {"port": 8765, "path": "/ws"}
    document = {"server": server, "admin": {"port": 8766}}
    merged, sources = apply_env(document, {("server", "port"): (9000, "WS_SUPERVISOR_SERVER_PORT")})
    assert merged == {"server": {"port": 9000, "path": "/ws"}, "admin": {"port": 8766}}
    assert server["port"] == 8765  # not changed in place
    assert sources == {("server", "port"): "WS_SUPERVISOR_SERVER_PORT"}
