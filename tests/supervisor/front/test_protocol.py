"""The frame parser at its depth limit."""

from __future__ import annotations

import json

import pytest

from supervisor.errors import FrameError
from supervisor.front.protocol import MAX_DEPTH, parse_frame

pytestmark = pytest.mark.timeout(10)


def nested(levels: int) -> str:
    """A frame whose value nests ``levels`` deep (the frame itself is level 1)."""
    inner: object = 1
    for _ in range(levels - 1):
        inner = [inner]
    return json.dumps({"type": "echo", "data": inner})


def test_a_frame_exactly_at_the_depth_limit_is_accepted() -> None:
    assert parse_frame(nested(MAX_DEPTH))["type"] == "echo"


def test_a_frame_one_level_past_the_limit_is_too_deep() -> None:
    with pytest.raises(FrameError) as raised:
        parse_frame(nested(MAX_DEPTH + 1))
    assert raised.value.code == "too_deep"


def test_brackets_inside_strings_do_not_count_as_depth() -> None:
    text = json.dumps({"type": "echo", "data": "[{" * 100})
    assert parse_frame(text)["data"] == "[{" * 100
