"""The messages of the tree: immutable attrs classes, each documented, all exported."""

from __future__ import annotations

import inspect
from typing import Any

import attrs
import pytest

import actors.messages
from actors.messages import UsageReport

MESSAGES = [getattr(actors.messages, name) for name in actors.messages.__all__]


def an_instance(cls: type[Any]) -> Any:
    """A message of type ``cls`` (messages validate nothing, so any value will do)."""
    required = {
        field.name: None
        for field in attrs.fields(cls)
        if field.init and field.default is attrs.NOTHING
    }
    return cls(**required)


def test_every_message_class_of_the_module_is_exported() -> None:
    defined = {
        name
        for name, cls in inspect.getmembers(actors.messages, inspect.isclass)
        if cls.__module__ == actors.messages.__name__
    }
    assert defined == set(actors.messages.__all__)


@pytest.mark.parametrize("cls", MESSAGES, ids=lambda cls: cls.__name__)
def test_a_message_cannot_be_changed_once_built(cls: type[Any]) -> None:
    assert attrs.has(cls)
    message = an_instance(cls)
    names = [field.name for field in attrs.fields(cls)] or ["anything"]
    for name in names:
        with pytest.raises(attrs.exceptions.FrozenInstanceError):
            setattr(message, name, "changed")


@pytest.mark.parametrize("cls", MESSAGES, ids=lambda cls: cls.__name__)
def test_a_message_has_a_docstring_of_its_own(cls: type[Any]) -> None:
    assert (cls.__dict__.get("__doc__") or "").strip()


def test_the_messages_that_are_asked_for_are_named_get_and_carry_nothing() -> None:
    asked = [cls for cls in MESSAGES if cls.__name__.startswith("Get")]
    assert asked
    assert all(attrs.fields(cls) == () for cls in asked)


def test_a_usage_reports_counts_are_everything_but_its_wake_time() -> None:
    report = UsageReport("alice", used=3, limit=5, pool_idle=1, admits_seen=7, wake_at=10.0)
    assert report.counts == (3, 5, 1, 7)
    assert attrs.evolve(report, wake_at=99.0).counts == report.counts
    for field in ("used", "limit", "pool_idle", "admits_seen"):
        changed = attrs.evolve(report, **{field: getattr(report, field) + 1})
        assert changed.counts != report.counts, field


def test_a_usage_report_without_a_wake_time_is_due_at_every_tick() -> None:
    report = UsageReport("alice", used=0, limit=5, pool_idle=0, admits_seen=0)
    assert report.wake_at == float("-inf")
    assert report.wake_at <= -1e300
