"""Push from any node, the pure part: the messages between nodes and the answer they add up to."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from supervisor.cluster.push_tally import (
    PushAck,
    PushAnswer,
    PushFrame,
    PushTally,
    format_push,
    format_push_ack,
    parse_push_message,
    parse_route,
)


def test_a_push_is_one_line_of_tab_separated_fields_versioned_1() -> None:
    frame = PushFrame("7", "node-a", "alice", "t1", '{"x":"a\\tb"}')
    assert format_push(frame) == 'push1\t7\tnode-a\talice\tt1\t{"x":"a\\tb"}'
    assert parse_push_message(format_push(frame).encode()) == frame


def test_a_push_to_every_connection_of_the_user_has_an_empty_thread() -> None:
    frame = PushFrame("8", "node-a", "alice", None, "7")
    assert format_push(frame) == "push1\t8\tnode-a\talice\t\t7"
    assert parse_push_message(format_push(frame)) == frame


def test_an_answer_names_the_push_the_node_and_the_count() -> None:
    ack = PushAck("7", "node-b", 2)
    assert format_push_ack(ack) == "pushack1\t7\tnode-b\t2"
    assert parse_push_message(b"pushack1\t7\tnode-b\t2") == ack


@given(st.recursive(st.text() | st.integers() | st.none(), st.lists, max_leaves=10))
def test_any_json_text_comes_through_a_push_message_unchanged(data: object) -> None:
    text = json.dumps(data, ensure_ascii=False)
    frame = PushFrame("1", "node-a", "u", None, text)
    parsed = parse_push_message(format_push(frame).encode())
    assert isinstance(parsed, PushFrame) and json.loads(parsed.text) == data


@pytest.mark.parametrize(
    "data",
    [
        b"supersede\talice\talice:t1\tws_1",  # the ledger's messages are not pushes
        b"push1\t7\tnode-a\talice",  # fields short
        b"push1\t\tnode-a\talice\t\t7",  # no id
        b"push\t7\tnode-a\talice\t\t7",  # another version
        b"push2\t7\tnode-a\talice\t\t7",
        b"pushack1\t7\tnode-b",
        b"pushack1\t7\tnode-b\ttwo",
        b"pushack1\t7\tnode-b\t-1",
        b"pushack1\t7\tnode-b\t1\textra",
        b"\xff\xfepush1",
    ],
)
def test_anything_else_on_the_channel_is_no_push_message(data: bytes) -> None:
    assert parse_push_message(data) is None


def test_the_route_reply_is_each_node_with_its_channels_subscribers_in_order() -> None:
    assert parse_route([b"node-b", 1, b"node-c", 0]) == [("node-b", 1), ("node-c", 0)]
    assert parse_route([]) == []


def test_a_tally_is_complete_once_every_node_the_frame_went_to_has_answered() -> None:
    tally = PushTally()
    assert not tally.complete  # not routed yet
    tally.route([("node-b", 1), ("node-c", 2)])
    assert not tally.complete and tally.waiting == {"node-b", "node-c"}
    tally.ack("node-b", 2)
    assert not tally.complete
    tally.ack("node-c", 0)
    assert tally.complete
    assert tally.answer("node-a", 1) == PushAnswer(
        3, {"node-a": 1, "node-b": 2, "node-c": 0}, cluster="routed"
    )


def test_an_answer_before_its_route_is_kept_and_not_waited_for_again() -> None:
    tally = PushTally()
    tally.ack("node-b", 1)
    tally.route([("node-b", 1)])
    assert tally.complete and tally.answer("node-a", 0).nodes == {"node-a": 0, "node-b": 1}


def test_a_node_nobody_listens_for_is_unreachable_and_not_waited_for() -> None:
    tally = PushTally()
    tally.route([("node-b", 0), ("node-c", 1)])
    assert tally.waiting == {"node-c"}
    answer = tally.answer("node-a", 2)  # given up on before node-c answered
    assert answer == PushAnswer(
        2, {"node-a": 2}, unconfirmed=("node-c",), unreachable=("node-b",), cluster="routed"
    )
    assert answer.as_json() == {
        "delivered": 2,
        "nodes": {"node-a": 2},
        "unconfirmed": ["node-c"],
        "unreachable": ["node-b"],
        "cluster": "routed",
    }


def test_a_push_nobody_else_holds_is_complete_as_soon_as_it_is_routed() -> None:
    tally = PushTally()
    tally.route([])
    assert tally.complete and tally.answer("node-a", 1).delivered == 1


def test_a_failed_route_is_complete_and_reports_the_cluster_unavailable() -> None:
    tally = PushTally()
    tally.fail("Connection refused")
    assert tally.complete and tally.failed == "Connection refused"
    assert tally.answer("node-a", 1) == PushAnswer(1, {"node-a": 1}, cluster="unavailable")


def test_a_node_of_its_own_answers_the_count_alone() -> None:
    assert PushAnswer(2, {"node-a": 2}).as_json() == {"delivered": 2}


@pytest.mark.parametrize(
    "answer",
    [
        PushAnswer(3, {}),
        PushAnswer(5, {"a": 2, "b": 3}, unconfirmed=("c",), unreachable=("d",), cluster="routed"),
        PushAnswer(1, {"a": 1}, cluster="unavailable"),
    ],
    ids=["a node of its own", "routed", "redis unavailable"],
)
def test_an_answer_read_back_from_its_json_is_the_same_answer(answer: PushAnswer) -> None:
    assert PushAnswer.from_json(json.loads(json.dumps(answer.as_json()))) == answer
