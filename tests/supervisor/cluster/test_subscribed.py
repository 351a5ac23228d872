"""Reading a subscribed Redis connection's bytes: messages whole, in order, from any pieces."""

from __future__ import annotations

import pytest

from supervisor.cluster.subscribed import SubscribedReader
from supervisor.errors import SubscribedError

pytestmark = pytest.mark.timeout(10)

CONFIRMED = b"*3\r\n$9\r\nsubscribe\r\n$6\r\nwss:n1\r\n:1\r\n"


def message(payload: bytes, channel: bytes = b"wss:n1", kind: bytes = b"*") -> bytes:
    return b"%s3\r\n$7\r\nmessage\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (
        kind, len(channel), channel, len(payload), payload,
    )  # fmt: skip


def test_the_subscribe_confirmation_is_read_and_gives_no_message() -> None:
    reader = SubscribedReader()
    assert reader.feed(CONFIRMED) == []
    assert reader.pending == 0


def test_each_message_s_payload_comes_once_whole_in_order() -> None:
    reader = SubscribedReader()
    data = CONFIRMED + message(b"first") + message(b"second\r\nwith a CRLF inside")
    assert reader.feed(data) == [b"first", b"second\r\nwith a CRLF inside"]


def test_a_message_fed_one_byte_at_a_time_comes_once_it_is_whole() -> None:
    reader = SubscribedReader()
    data = message(b"push\tpayload") + message(b"")
    got = [payload for byte in range(len(data)) for payload in reader.feed(data[byte : byte + 1])]
    assert got == [b"push\tpayload", b""]
    assert reader.pending == 0


def test_a_large_message_in_many_pieces_keeps_only_its_bytes_until_whole() -> None:
    reader = SubscribedReader()
    big = b"x" * 1_000_000
    data = message(big) + message(b"after")
    pieces = [data[i : i + 65536] for i in range(0, len(data), 65536)]
    got = [payload for piece in pieces[:-1] for payload in reader.feed(piece)]
    assert got == []
    assert 0 < reader.pending < len(data)
    assert reader.feed(pieces[-1]) == [big, b"after"]


def test_a_resp3_push_is_read_as_an_array_is() -> None:
    assert SubscribedReader().feed(message(b"three", kind=b">")) == [b"three"]


def test_a_pong_and_an_unsubscribe_are_read_and_dropped() -> None:
    pong = b"*2\r\n$4\r\npong\r\n$0\r\n\r\n"
    unsubscribed = b"*3\r\n$11\r\nunsubscribe\r\n$6\r\nwss:n1\r\n:0\r\n"
    assert SubscribedReader().feed(pong + unsubscribed + message(b"m")) == [b"m"]


@pytest.mark.parametrize(
    ("data", "says"),
    [
        (b"-NOAUTH Authentication required.\r\n", "redis answered an error: NOAUTH"),
        (b"+OK\r\n", "not a pub/sub reply"),
        (b"*3\r\n$4\r\nsmsg\r\n$1\r\na\r\n$1\r\nb\r\n", "not a pub/sub reply: b'smsg'"),
        (b"*3\r\n$7\r\nmessage\r\n$1\r\na\r\n$1\r\nbXY", "does not end where its length says"),
        (b"*3\r\n%7\r\n", "not a pub/sub reply item"),
        (b"*99\r\n", "not a pub/sub reply"),
        (b"*1\r\n:5\r\n", "its kind is no string"),
    ],
)
def test_bytes_no_subscribed_connection_sends_raise_a_precise_error(data: bytes, says: str) -> None:
    with pytest.raises(SubscribedError, match=says.replace("*", r"\*")):
        SubscribedReader().feed(data)
