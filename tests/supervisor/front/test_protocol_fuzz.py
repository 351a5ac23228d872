"""Property tests: any text is a frame or a FrameError, and JsonProtocol answers it once."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actors.context import UserExecutionContext
from supervisor.errors import FrameError
from supervisor.front.apps import EchoApp
from supervisor.front.protocol import MAX_DEPTH, JsonProtocol, parse_frame, welcome_frame

__all__: list[str] = []

ERROR_CODES = frozenset(
    {"invalid_json", "not_an_object", "missing_type", "too_deep", "unknown_type"}
)
"""Every code parse_frame and JsonProtocol may put in an error frame."""

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=20,
)


def _nested(depth: int, kind: str) -> str:
    if kind == "array":
        return "[" * depth + "]" * depth
    return '{"a":' * depth + "1" + "}" * depth


@st.composite
def frames(draw: st.DrawFn) -> str:
    """Texts a hostile client might send: noise, JSON of any shape, deep nesting, frames."""
    kind = draw(st.sampled_from(["text", "json", "object", "deep", "frame", "mutated"]))
    if kind == "text":
        return draw(st.text(max_size=200))
    if kind == "json":
        return json.dumps(draw(json_values))
    if kind == "object":
        body = draw(st.dictionaries(st.text(max_size=8), json_values, max_size=5))
        if draw(st.booleans()):
            body["type"] = draw(st.one_of(st.text(max_size=10), json_values))
        return json.dumps(body)
    if kind == "deep":
        depth = draw(st.integers(min_value=MAX_DEPTH - 2, max_value=5000))
        inner = _nested(depth, draw(st.sampled_from(["array", "object"])))
        return json.dumps({"type": "echo"})[:-1] + ', "data": ' + inner + "}"
    if kind == "frame":
        kind_of = draw(st.sampled_from(["ping", "echo", "pong", "welcome", ""]))
        return json.dumps({"type": kind_of, "data": draw(json_values)})
    text = json.dumps({"type": "echo", "data": draw(json_values)})
    cut = draw(st.integers(min_value=0, max_value=len(text)))
    return text[:cut] + draw(st.text(max_size=3)) + text[cut + 1 :]


CONTEXT = UserExecutionContext.from_websocket_request("alice")
FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(st.one_of(frames(), st.text()))
def test_any_text_parses_to_a_typed_dict_or_raises_a_frame_error_with_a_known_code(
    text: str,
) -> None:
    try:
        frame = parse_frame(text)
    except FrameError as error:
        assert error.code in ERROR_CODES, error
        assert isinstance(error.message, str) and error.message
    else:
        assert isinstance(frame, dict) and isinstance(frame["type"], str)


@FUZZ
@given(st.one_of(frames(), st.text()))
def test_json_protocol_sends_exactly_one_json_answer_for_any_text(text: str) -> None:
    sent: list[str] = []
    JsonProtocol(EchoApp())(CONTEXT, text, sent.append)
    assert len(sent) == 1, sent
    answer = json.loads(sent[0])
    assert answer["type"] in ("pong", "echo", "error"), answer
    if answer["type"] == "error":
        assert answer["code"] in ERROR_CODES, answer
        assert isinstance(answer["message"], str)


@settings(max_examples=50, deadline=None)
@given(st.integers(min_value=MAX_DEPTH + 1, max_value=200_000), st.booleans())
def test_nesting_beyond_the_limit_is_too_deep_or_invalid_json_never_a_crash(
    depth: int, objects: bool
) -> None:
    text = '{"type": "echo", "data": ' + _nested(depth, "object" if objects else "array") + "}"
    try:
        parse_frame(text)
    except FrameError as error:
        assert error.code in ("too_deep", "invalid_json")
    else:
        raise AssertionError(f"a frame {depth} levels deep was accepted")


@given(json_values)
def test_a_valid_ping_or_echo_frame_is_answered_with_pong_or_the_same_data(data: Any) -> None:
    sent: list[str] = []
    protocol = JsonProtocol(EchoApp())
    protocol(CONTEXT, json.dumps({"type": "ping"}), sent.append)
    protocol(CONTEXT, json.dumps({"type": "echo", "data": [data]}), sent.append)
    assert json.loads(sent[0]) == {"type": "pong"}
    echoed = json.loads(sent[1])
    assert echoed["type"] == "echo" and len(echoed["data"]) == 1


_ID_CHARS = "abcXYZ019._-"


@settings(max_examples=200, deadline=None)
@given(
    user_id=st.text("aZ9", min_size=1, max_size=1).flatmap(
        lambda head: st.text(_ID_CHARS + "@+|", max_size=40).map(lambda tail: head + tail)
    ),
    thread_id=st.none() | st.text("aZ9", min_size=1, max_size=1).map(lambda head: head + "t.-_"),
)
def test_the_welcome_frame_is_the_text_json_dumps_makes_of_the_ids(
    user_id: str, thread_id: str | None
) -> None:
    context = UserExecutionContext.from_websocket_request(user_id, thread_id)
    ids = ("user_id", "thread_id", "run_id", "request_id", "websocket_id")
    expected = json.dumps({"type": "welcome", **{name: getattr(context, name) for name in ids}})
    assert welcome_frame(context) == expected
