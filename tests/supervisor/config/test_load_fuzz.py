"""Property tests: any document or text gives a Config or a ConfigError, nothing else."""

from __future__ import annotations

import string
from collections.abc import Mapping
from pathlib import Path

import attrs
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from supervisor.config.load import load_config, parse_config
from supervisor.config.schema import Config
from supervisor.errors import ConfigError

__all__: list[str] = []

SECTIONS: dict[str, list[str]] = {
    field.name: [f.name for f in attrs.fields(field.type)]
    for field in attrs.fields(attrs.resolve_types(Config))
    if isinstance(field.type, type) and attrs.has(field.type)
}
SCHEMA_NAMES = sorted({"profile", *SECTIONS, *(k for keys in SECTIONS.values() for k in keys)})

keys = st.one_of(
    st.sampled_from(SCHEMA_NAMES),
    st.text(alphabet=string.ascii_letters + "_.-", min_size=1, max_size=12),
)
scalars = st.one_of(
    st.integers(),
    st.floats(),
    st.booleans(),
    st.text(max_size=20),
    st.sampled_from(["production", "ci", "reject", "none", "INFO", "/ws", "true", "false"]),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(keys, inner, max_size=3)),
    max_leaves=8,
)
section_tables = st.fixed_dictionaries(
    {},
    optional={
        key: st.one_of(scalars, st.integers(-2, 70000), st.floats(-1, 2)) for key in SCHEMA_NAMES
    },
)
documents = st.dictionaries(
    keys, st.one_of(values, section_tables), max_size=6
) | st.fixed_dictionaries({}, optional={name: section_tables for name in SECTIONS})

FUZZ = settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


def starts_with_a_name(path: str, names: set[str]) -> bool:
    return any(path == n or path.startswith((n + ".", n + " ")) for n in names)


@FUZZ
@given(documents)
def test_any_document_gives_a_config_or_a_config_error(doc: Mapping[str, object]) -> None:
    try:
        config = parse_config(doc)
    except ConfigError as exc:
        assert exc.issues
        names = {"<root>", *SCHEMA_NAMES, *doc}
        for issue in exc.issues:
            assert starts_with_a_name(issue.path, names), issue
            assert issue.message
            assert "Traceback" not in str(exc)
    else:
        assert isinstance(config, Config)


@FUZZ
@given(st.dictionaries(st.sampled_from(sorted(SECTIONS)), section_tables, max_size=4))
def test_a_document_of_schema_keys_reports_only_schema_paths(
    doc: Mapping[str, object],
) -> None:
    try:
        parse_config(doc)
    except ConfigError as exc:
        for issue in exc.issues:
            assert starts_with_a_name(issue.path, set(SECTIONS)), issue


toml_fragments = st.sampled_from(
    [
        "[quota]\n",
        "[[x]]\n",
        "profile = 'ci'\n",
        "max_managers_per_user = 20\n",
        "json = false\n",
        "a.b = {c = [1, 2.5, 'x']}\n",
        "= 1\n",
        "'''\n",
        "[",
        "]",
        '"',
        "1979-05-27T07:32:00Z",
        "inf",
        "nan",
        "\n",
    ]
)
texts = st.one_of(
    st.text(max_size=200), st.lists(toml_fragments | st.text(max_size=8)).map("".join)
)


@FUZZ
@given(texts)
def test_any_text_gives_a_config_or_a_config_error(tmp_path: Path, text: str) -> None:
    path = tmp_path / "fuzz.toml"
    path.write_text(text, encoding="utf-8")
    try:
        config = load_config(path, env={})
    except ConfigError as exc:
        assert exc.issues
    else:
        assert isinstance(config, Config)
