"""The exceptions: one tree under WsSupervisorError, drawn exactly in the errors docstring."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
from types import ModuleType

import pytest

import actors
import actors.errors
import supervisor
from actors.errors import (
    AdmissionRefused,
    DispatcherStopped,
    InjectedFault,
    InvalidIdError,
    TreeNotRunning,
    WsSupervisorError,
)

TREE_LINE = re.compile(r"^\s*(?:[├└]── )?(\w+)(?: \((\w+)\))?\s+(supervisor\s+)?\S")


def every_module() -> list[ModuleType]:
    """Every module of the engine and the product, imported."""
    found = []
    for package in (actors, supervisor):
        found.append(package)
        for info in pkgutil.walk_packages(package.__path__, f"{package.__name__}."):
            found.append(importlib.import_module(info.name))
    return found


def defined_exceptions() -> dict[str, type[BaseException]]:
    """Every exception class defined in a module of the engine or the product."""
    return {
        cls.__name__: cls
        for module in every_module()
        for _, cls in inspect.getmembers(module, inspect.isclass)
        if issubclass(cls, BaseException) and cls.__module__ == module.__name__
    }


def drawn_tree() -> dict[str, tuple[str | None, bool]]:
    """The docstring's tree: each name, with its extra base and whether it is the product's."""
    doc = actors.errors.__doc__ or ""
    block = doc.split("::", 1)[1].split("\n\n")[1]
    drawn = {}
    for line in block.splitlines():
        match = TREE_LINE.match(line)
        assert match, f"not a line of the tree: {line!r}"
        drawn[match[1]] = (match[2], match[3] is not None)
    return drawn


def public_subclasses_of_the_base() -> set[str]:
    return {
        name
        for name, cls in defined_exceptions().items()
        if issubclass(cls, WsSupervisorError) and not name.startswith("_")
    }


def test_every_error_the_docstrings_tree_names_is_a_subclass_of_the_base() -> None:
    assert set(drawn_tree()) - public_subclasses_of_the_base() == set()


@pytest.mark.parametrize("name", sorted(public_subclasses_of_the_base()))
def test_the_docstrings_tree_names_every_public_subclass_of_the_base(name: str) -> None:
    assert name in drawn_tree()


def test_the_docstrings_tree_says_where_each_error_lives_and_what_else_it_is() -> None:
    found = defined_exceptions()
    for name, (extra_base, product) in drawn_tree().items():
        cls = found[name]
        expected_module = "supervisor.errors" if product else "actors.errors"
        assert cls.__module__ == expected_module, name
        if extra_base is not None:
            assert extra_base in {base.__name__ for base in cls.__mro__}, name


def test_no_exception_of_the_code_base_derives_from_exception_but_through_the_base() -> None:
    outside = sorted(
        name for name, cls in defined_exceptions().items() if not issubclass(cls, WsSupervisorError)
    )
    assert outside == []


@pytest.mark.parametrize(
    ("error", "also"),
    [
        (InvalidIdError("user_id", "too long"), ValueError),
        (DispatcherStopped("not running"), RuntimeError),
        (AdmissionRefused("quota_full"), WsSupervisorError),
        (TreeNotRunning("stopped"), WsSupervisorError),
        (InjectedFault("on purpose"), WsSupervisorError),
    ],
)
def test_each_error_is_caught_by_the_base_and_by_the_builtin_it_extends(
    error: WsSupervisorError, also: type[Exception]
) -> None:
    for catch in (WsSupervisorError, also):
        with pytest.raises(catch):
            raise error


def test_an_invalid_id_error_names_the_field_and_the_reason() -> None:
    error = InvalidIdError("thread_id", "contains ':'")
    assert (error.field, error.reason) == ("thread_id", "contains ':'")
    assert str(error) == "invalid thread_id: contains ':'"


def test_an_admission_refusal_carries_its_reason_and_when_to_retry() -> None:
    error = AdmissionRefused("node_full", retry_after=5.0)
    assert (error.reason, error.retry_after) == ("node_full", 5.0)
    assert str(error) == "admission refused: node_full"
    assert AdmissionRefused("quota_full").retry_after is None
