"""Loading a :class:`~supervisor.config.schema.Config`: TOML, env overrides, strict checks.

Every problem in a document is collected before anything is built, and all of
them are raised together as one :class:`~supervisor.errors.ConfigError`, each
with its dotted key path (``quota.max_managers_per_user``; ``<root>`` for a
document that is not a table, ``<file>`` for a file that cannot be read or
parsed). Nothing is coerced: ``20.0`` is not an integer and ``"false"`` is not
a boolean. Environment variables ``WS_SUPERVISOR_<SECTION>_<KEY>`` (and
``WS_SUPERVISOR_PROFILE``) override the file; one that names no setting is an
error, so that a typo is never ignored.

Once a document passes the checks it is structured by a cattrs converter whose
hooks are just as strict and which forbids extra keys.
"""

from __future__ import annotations

import math
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
import cattrs

from supervisor.config.keys import (
    SECTION_FIELDS,
    SECTIONS,
    TOP_FIELDS,
    Field,
    Key,
    Kind,
    apply_env,
    read_env,
)
from supervisor.config.schema import Config
from supervisor.errors import ConfigError, ConfigIssue

__all__ = [
    "FILE_PATH",
    "PROFILES",
    "ROOT_PATH",
    "check_config_file",
    "config_to_dict",
    "load_config",
    "load_profile",
    "parse_config",
    "profile_path",
    "profile_text",
]

PROFILES = ("production", "staging", "ci", "dev")
ROOT_PATH = "<root>"
FILE_PATH = "<file>"
_PROFILE_DIR = Path(__file__).parent / "profiles"  # config/ in a checkout, package data in a wheel

# --- describing values and checking their types -----------------------------


_TYPE_NAMES: dict[type, str] = {bool: "boolean", int: "integer", float: "float", str: "string"}


def _type_name(value: object) -> str:
    if isinstance(value, list | tuple):
        return "array"
    if isinstance(value, Mapping):
        return "table"
    return next((n for t, n in _TYPE_NAMES.items() if isinstance(value, t)), type(value).__name__)


def _describe(value: object) -> str:
    """``'integer 3'``, ``"string 'x'"``, ``'boolean true'``, ``'table'``: never huge."""
    name = _type_name(value)
    if isinstance(value, bool):
        return f"{name} {str(value).lower()}"
    if not isinstance(value, int | float | str):
        return name
    try:
        text = repr(value)
    except ValueError:  # an integer too long to print
        return name
    return f"{name} {text if len(text) <= 60 else text[:57] + '...'}"


def _type_problem(field: Field, value: object) -> str | None:
    """Why ``value`` has the wrong type for ``field``, or None."""
    kind = field.kind
    if kind == "int" and type(value) is not int:
        return f"expected an integer, got {_describe(value)}"
    if kind == "float":
        if isinstance(value, bool) or not isinstance(value, int | float):
            return f"expected a number, got {_describe(value)}"
        if isinstance(value, float) and not math.isfinite(value):
            return f"expected a finite number, got {_describe(value)}"
    if kind == "bool" and not isinstance(value, bool):
        return f"expected a boolean (true or false), got {_describe(value)}"
    if kind == "str" and not isinstance(value, str):
        return f"expected a string, got {_describe(value)}"
    if kind == "choice" and not (isinstance(value, str) and value in field.choices):
        allowed = ", ".join(repr(c) for c in field.choices)
        return f"must be one of {allowed}; got {_describe(value)}"
    return None


def _field_problem(field: Field, value: object) -> str | None:
    """The type problem, else the range problem (from the attrs validator), else None."""
    problem = _type_problem(field, value)
    if problem is not None or field.attribute.validator is None:
        return problem
    try:
        field.attribute.validator(None, field.attribute, value)
    except ValueError as exc:
        return str(exc)
    return None


# --- walking a document ------------------------------------------------------


def _path(key: Key, env_vars: Mapping[Key, str]) -> str:
    dotted = ".".join(key)
    var = env_vars.get(key)
    return dotted if var is None else f"{dotted} ({var})"


def _check_section(section: str, table: object, env_vars: Mapping[Key, str]) -> list[ConfigIssue]:
    if not isinstance(table, Mapping):
        return [ConfigIssue(section, f"expected a table, got {_describe(table)}")]
    fields = SECTION_FIELDS[section]
    issues: list[ConfigIssue] = []
    for raw_key, value in table.items():
        key = (section, str(raw_key))
        field = fields.get(key[1])
        problem = "unknown key" if field is None else _field_problem(field, value)
        if problem is not None:
            issues.append(ConfigIssue(_path(key, env_vars), problem))
    if not issues:
        issues.extend(_cross_check(section, table))
    return issues


def _cross_check(section: str, table: Mapping[Any, object]) -> list[ConfigIssue]:
    """Build the section to run its cross-field check (its fields are known to be fine)."""
    try:
        SECTIONS[section](**table)
    except (ValueError, TypeError) as exc:
        return [ConfigIssue(section, str(exc))]
    return []


def _check_document(doc: Mapping[Any, object], env_vars: Mapping[Key, str]) -> list[ConfigIssue]:
    issues: list[ConfigIssue] = []
    for raw_key, value in doc.items():
        key = str(raw_key)
        if key in SECTIONS:
            issues.extend(_check_section(key, value, env_vars))
            continue
        field = TOP_FIELDS.get(key)
        problem = "unknown key" if field is None else _field_problem(field, value)
        if problem is not None:
            issues.append(ConfigIssue(_path((key,), env_vars), problem))
    return issues


# --- structuring with cattrs -------------------------------------------------


def _strict(field: Field, python_type: type) -> Any:
    def hook(value: object, _type: object) -> object:
        problem = _type_problem(field, value)
        if problem is not None:
            raise TypeError(problem)
        return python_type(value)

    return hook


_STRICT_TYPES: dict[Kind, type] = {"int": int, "float": float, "bool": bool, "str": str}


def _make_converter() -> cattrs.Converter:
    converter = cattrs.Converter(forbid_extra_keys=True, detailed_validation=True)
    dummy = attrs.fields(Config).profile
    for kind, python_type in _STRICT_TYPES.items():
        hook = _strict(Field(kind, (), dummy), python_type)
        converter.register_structure_hook(python_type, hook)
    return converter


_CONVERTER = _make_converter()


def _transformed_issues(exc: Exception) -> list[ConfigIssue]:
    issues = []
    for line in cattrs.transform_error(exc, path="$"):
        message, _, where = line.rpartition(" @ ")
        path = where.removeprefix("$").removeprefix(".") or ROOT_PATH
        issues.append(ConfigIssue(path, message or line))
    return issues


def _structure(doc: Mapping[Any, object], source: str) -> Config:
    try:
        return _CONVERTER.structure(doc, Config)
    except (cattrs.BaseValidationError, ValueError, TypeError) as exc:
        raise ConfigError(_transformed_issues(exc), source) from None


# --- the public API -----------------------------------------------------------


def parse_config(
    data: Mapping[str, object], *, env: Mapping[str, str] | None = None, source: str = "config"
) -> Config:
    """The config described by ``data`` (a parsed TOML document) with ``env`` laid over it.

    ``env`` None means no environment overrides. Raises :class:`ConfigError`
    listing every problem found.
    """
    if not isinstance(data, Mapping):
        issue = ConfigIssue(ROOT_PATH, f"expected a table, got {_describe(data)}")
        raise ConfigError([issue], source)
    overrides, issues = read_env(env or {})
    merged, env_vars = apply_env(data, overrides)
    issues = _check_document(merged, env_vars) + issues
    if issues:
        raise ConfigError(issues, source)
    config = _structure(merged, source)
    problems = [ConfigIssue(path, problem) for path, problem in config.cross_section_problems()]
    if problems:
        raise ConfigError(problems, source)
    return config


def _file_error(path: Path, message: str) -> ConfigError:
    return ConfigError([ConfigIssue(FILE_PATH, message)], str(path))


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise _file_error(path, f"no such file: {path}") from None
    except OSError as exc:
        raise _file_error(path, f"cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise _file_error(path, f"not UTF-8 text: {exc.reason} at byte {exc.start}") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise _file_error(path, f"invalid TOML: {exc}") from None
    except ValueError as exc:  # e.g. an integer literal too long to convert
        raise _file_error(path, f"invalid TOML: {exc}") from None
    except RecursionError:
        raise _file_error(path, "invalid TOML: nested too deeply") from None


def load_config(
    path: str | os.PathLike[str] | None, *, env: Mapping[str, str] | None = None
) -> Config:
    """Read the TOML file at ``path`` (None: defaults only) and apply env overrides.

    ``env`` None means :data:`os.environ`; pass ``{}`` for no overrides.
    """
    environ = os.environ if env is None else env
    if path is None:
        return parse_config({}, env=environ, source="defaults")
    file_path = Path(path)
    return parse_config(_read_toml(file_path), env=environ, source=str(file_path))


def profile_path(name: str) -> Path:
    """The bundled file of a named profile; ConfigError for an unknown name.

    In a checkout that is ``config/<name>.toml``; installed from the wheel, the
    same file shipped as package data (``supervisor/config/profiles`` links to
    ``config/``, so there is one copy).
    """
    if name not in PROFILES:
        message = f"unknown profile {name!r}; expected one of {', '.join(PROFILES)}"
        raise ConfigError([ConfigIssue("profile", message)], "profiles")
    return _PROFILE_DIR / f"{name}.toml"


def profile_text(name: str) -> str:
    """The text of a bundled profile, to start one's own file from."""
    path = profile_path(name)
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise _file_error(path, f"cannot read {path}: {exc.strerror or exc}") from None


def load_profile(name: str, *, env: Mapping[str, str] | None = None) -> Config:
    """Load the named profile's file; ``env`` as for :func:`load_config`."""
    return load_config(profile_path(name), env=env)


def config_to_dict(config: Config) -> dict[str, object]:
    """``config`` as plain nested dicts; :func:`parse_config` turns it back into ``config``."""
    data: dict[str, object] = _CONVERTER.unstructure(config)
    return data


def check_config_file(path: str | os.PathLike[str]) -> list[ConfigIssue]:
    """Every problem in the file at ``path`` on its own (no env overrides); [] when fine."""
    try:
        load_config(path, env={})
    except ConfigError as exc:
        return list(exc.issues)
    return []
