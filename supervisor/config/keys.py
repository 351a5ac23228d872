"""Every key of a config: its kind, read off the schema, and the variable that overrides it.

The kinds come from the attrs classes of :mod:`supervisor.config.schema`
(``int``, ``float``, ``bool``, ``str``, or a ``choice`` of a Literal's
values), so a key added there is checked and overridable with nothing
added here. Each key has one environment variable,
``WS_SUPERVISOR_<SECTION>_<KEY>`` (``WS_SUPERVISOR_<KEY>`` at the top
level); :func:`read_env` parses the ones set, strictly (``"yes"`` is not a
boolean, ``"1e400"`` not a finite number), and :func:`apply_env` lays them
over a document. Pure: no I/O.
"""

from __future__ import annotations

import math
import re
import typing
from collections.abc import Mapping
from typing import Any, Literal

import attrs

from supervisor.config.schema import Config
from supervisor.errors import ConfigIssue

__all__ = [
    "ENV_PREFIX",
    "SECTIONS",
    "SECTION_FIELDS",
    "TOP_FIELDS",
    "Field",
    "Key",
    "Kind",
    "apply_env",
    "read_env",
]

ENV_PREFIX = "WS_SUPERVISOR_"
"""The prefix of every variable that overrides a key."""

Kind = Literal["int", "float", "bool", "str", "choice"]
"""What a key holds: a number, a boolean, a string, or one of a Literal's values."""

Key = tuple[str, ...]
"""A key's path: ``("quota", "max_managers_per_user")``, or ``("profile",)`` at the top level."""


# --- the schema, read off the attrs classes ---------------------------------


@attrs.frozen
class Field:
    """One setting: its kind, its allowed values (for a Literal) and its attrs attribute."""

    kind: Kind
    choices: tuple[str, ...]
    attribute: attrs.Attribute[Any]


def _field_of(attribute: attrs.Attribute[Any], hint: Any) -> Field:
    if typing.get_origin(hint) is Literal:
        return Field("choice", tuple(typing.get_args(hint)), attribute)
    kinds: dict[Any, Kind] = {int: "int", float: "float", bool: "bool", str: "str"}
    return Field(kinds[hint], (), attribute)


def _fields_of(cls: type) -> dict[str, Field]:
    hints = typing.get_type_hints(cls)
    return {a.name: _field_of(a, hints[a.name]) for a in attrs.fields(cls)}


_ROOT_HINTS = typing.get_type_hints(Config)
TOP_FIELDS = {
    a.name: _field_of(a, _ROOT_HINTS[a.name])
    for a in attrs.fields(Config)
    if not attrs.has(_ROOT_HINTS[a.name])
}
"""The top-level keys (not sections), by name."""
SECTIONS: dict[str, type] = {k: h for k, h in _ROOT_HINTS.items() if attrs.has(h)}
"""Each section's attrs class, by the section's name."""
SECTION_FIELDS = {name: _fields_of(cls) for name, cls in SECTIONS.items()}
"""Each section's keys, by section and key."""


def _env_names() -> dict[str, tuple[Key, Field]]:
    names: dict[str, tuple[Key, Field]] = {
        ENV_PREFIX + k.upper(): ((k,), f) for k, f in TOP_FIELDS.items()
    }
    for section, fields in SECTION_FIELDS.items():
        for key, field in fields.items():
            names[f"{ENV_PREFIX}{section.upper()}_{key.upper()}"] = ((section, key), field)
    return names


_ENV_NAMES = _env_names()


# --- environment overrides ---------------------------------------------------

_INT_RE = re.compile(r"-?[0-9]+")
_FLOAT_RE = re.compile(r"[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?")


def _parse_env_value(field: Field, raw: str) -> object:
    """The value of an env string for ``field``; ValueError with the reason when bad."""
    if field.kind == "int":
        if _INT_RE.fullmatch(raw) is None or len(raw) > 100:
            raise ValueError(f"expected an integer, got {raw!r}")
        return int(raw)
    if field.kind == "float":
        number = float(raw) if _FLOAT_RE.fullmatch(raw) else math.nan
        if not math.isfinite(number):
            raise ValueError(f"expected a finite number, got {raw!r}")
        return number
    if field.kind == "bool":
        if raw.lower() not in ("true", "false"):
            raise ValueError(f"expected true or false, got {raw!r}")
        return raw.lower() == "true"
    return raw


def _unknown_env_message(name: str) -> str:
    rest = name[len(ENV_PREFIX) :]
    for section in SECTIONS:
        if rest.startswith(section.upper() + "_"):
            key = rest[len(section) + 1 :].lower()
            return f"unknown setting: section [{section}] has no key {key!r}"
    return "unknown setting: matches no section or key"


def read_env(env: Mapping[str, str]) -> tuple[dict[Key, tuple[object, str]], list[ConfigIssue]]:
    """The overrides ``{key: (value, variable)}`` in ``env``, and the problems with them."""
    overrides: dict[Key, tuple[object, str]] = {}
    issues: list[ConfigIssue] = []
    for name in sorted(n for n in env if n.startswith(ENV_PREFIX)):
        target = _ENV_NAMES.get(name)
        if target is None:
            issues.append(ConfigIssue(name, _unknown_env_message(name)))
            continue
        key, field = target
        try:
            overrides[key] = (_parse_env_value(field, env[name]), name)
        except ValueError as exc:
            issues.append(ConfigIssue(f"{'.'.join(key)} ({name})", str(exc)))
    return overrides, issues


def apply_env(
    data: Mapping[Any, object], overrides: Mapping[Key, tuple[object, str]]
) -> tuple[dict[Any, object], dict[Key, str]]:
    """``data`` with the overrides laid over it, and which key came from which variable."""
    merged: dict[Any, object] = dict(data)
    env_vars: dict[Key, str] = {}
    for key, (value, name) in overrides.items():
        if len(key) == 1:
            merged[key[0]] = value
        else:
            table = merged.get(key[0], {})
            if not isinstance(table, Mapping):
                continue  # the section itself is reported as not a table
            merged[key[0]] = {**table, key[1]: value}
        env_vars[key] = name
    return merged, env_vars
