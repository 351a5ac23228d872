"""The master's reading of a request head: where it ends, and what it says (pure)."""

from __future__ import annotations

from urllib.parse import parse_qsl

import pytest
from websockets.datastructures import is_valid_header_value

from supervisor.errors import HeadError
from supervisor.workers.head import MAX_HEAD, head_length, parse_head

HEAD = (
    b"GET /ws?user_id=alice&thread_id=t1 HTTP/1.1\r\n"
    b"Host: example.com\r\n"
    b"Upgrade: websocket\r\n"
    b"Authorization: Bearer abc\r\n"
    b"\r\n"
)


def test_a_head_ends_after_its_blank_line_and_what_follows_is_not_part_of_it() -> None:
    assert head_length(HEAD + b"\x81\x05hello") == len(HEAD)


def test_a_head_without_its_blank_line_yet_wants_more() -> None:
    assert head_length(HEAD[:-2]) is None
    assert head_length(b"") is None


def test_a_head_longer_than_the_limit_is_431() -> None:
    endless = b"GET / HTTP/1.1\r\nX-Long: " + b"a" * MAX_HEAD
    with pytest.raises(HeadError) as error:
        head_length(endless)
    assert (error.value.status, error.value.reason) == (
        431,
        f"request line and headers exceed {MAX_HEAD} bytes",
    )


def test_a_head_is_its_method_target_path_query_and_headers() -> None:
    head = parse_head(HEAD)
    assert (head.method, head.target, head.path) == (
        "GET",
        "/ws?user_id=alice&thread_id=t1",
        "/ws",
    )
    assert head.query == {"user_id": "alice", "thread_id": "t1"}
    assert head.headers["authorization"] == "Bearer abc"  # names are case-insensitive
    assert head.headers.get_all("Upgrade") == ["websocket"]


def test_repeated_headers_are_all_kept() -> None:
    head = parse_head(b"GET / HTTP/1.1\r\nOrigin: a\r\nOrigin: b\r\n\r\n")
    assert head.headers.get_all("Origin") == ["a", "b"]


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"GET /ws\r\n\r\n", "malformed request line: expected 'GET <target> HTTP/1.1'"),
        (b"GET /ws HTTP/1.0\r\n\r\n", "malformed request line: expected 'GET <target> HTTP/1.1'"),
        (b"GET http://x/ws HTTP/1.1\r\n\r\n", "the request target must be a path"),
        (b"GET /ws HTTP/1.1\r\nno colon here\r\n\r\n", "malformed header line"),
        (b"GET /ws HTTP/1.1\r\nBad Name: x\r\n\r\n", "malformed header line"),
        (b"GET /ws HTTP/1.1\r\n" + b"X: y\r\n" * 129 + b"\r\n", "more than 128 headers"),
    ],
    ids=["no-version", "http-1.0", "absolute-target", "no-colon", "space-in-name", "too-many"],
)
def test_a_malformed_head_is_400_with_the_reason(raw: bytes, reason: str) -> None:
    with pytest.raises(HeadError) as error:
        parse_head(raw)
    assert (error.value.status, error.value.reason) == (400, reason)


def test_a_header_value_with_characters_http_does_not_allow_is_400() -> None:
    with pytest.raises(HeadError) as error:
        parse_head(b"GET / HTTP/1.1\r\nX-Name: caf\xc3\xa9\r\n\r\n")
    assert (error.value.status, error.value.reason) == (
        400,
        "a header value holds characters HTTP does not allow",
    )


@pytest.mark.parametrize("byte", [b"\x00", b"\x08", b"\x0b", b"\x1f", b"\x7f", b"\x80", b"\xff"])
def test_a_header_value_is_refused_for_any_byte_but_tab_and_printable_ascii(
    byte: bytes,
) -> None:
    with pytest.raises(HeadError):
        parse_head(b"GET / HTTP/1.1\r\nX-Name: a" + byte + b"b\r\n\r\n")
    allowed = bytes([0x09, *range(0x20, 0x7F)])
    head = parse_head(b"GET / HTTP/1.1\r\nX-Name: a" + allowed + b"b\r\n\r\n")
    assert is_valid_header_value(head.headers["X-Name"])  # what websockets' Headers allows
    assert head.headers["X-Name"] == "a" + allowed.decode() + "b"


@pytest.mark.parametrize(
    "query",
    [
        "",
        "user_id=alice&thread_id=t1",
        "a=1&a=2",
        "a=&b=2",
        "a&b=2",
        "&&a=1&",
        "=x",
        "a=b=c",
        "token=a%20b&x=1",
        "name=a+b",
        "k%3D=v",
        "a=1;b=2",
    ],
)
def test_a_query_reads_as_parse_qsl_reads_it(query: str) -> None:
    assert parse_head(f"GET /ws?{query} HTTP/1.1\r\n\r\n".encode()).query == dict(parse_qsl(query))


def test_a_target_of_two_slashes_has_the_path_urlsplit_gives() -> None:
    head = parse_head(b"GET //host/ws?user_id=a HTTP/1.1\r\n\r\n")
    assert (head.path, head.query) == ("/ws", {"user_id": "a"})
