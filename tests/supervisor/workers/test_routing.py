"""The master's decisions on request heads, in a single daemon's order (pure, manual clock)."""

from __future__ import annotations

import collections
import time
from typing import Any

import jwt
import pytest
from websockets.http11 import Response

from actors.clock import ManualClock
from supervisor.front.auth import Authenticator
from supervisor.workers.head import parse_head
from supervisor.workers.routing import HandOff, HandoffPolicy, Refusal, owner_of
from tests.helpers import make_config

KEY = b"k" * 16
SECRET = "s" * 40
UPGRADE = (
    "Upgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
)


def head(target: str = "/ws?user_id=alice", extra: str = UPGRADE) -> Any:
    return parse_head(f"GET {target} HTTP/1.1\r\nHost: x\r\n{extra}\r\n".encode())


def policy(overrides: dict[str, Any] | None = None, workers: int = 4) -> HandoffPolicy:
    config = make_config(overrides)
    env = {"WSS_JWT_SECRET": SECRET}
    auth = Authenticator.from_config(config.auth, config.profile, env)
    return HandoffPolicy(config, auth, workers, KEY, clock=ManualClock())


def test_a_user_always_lands_on_the_same_worker_and_users_spread_over_all() -> None:
    owners = [owner_of(f"user{n}", 4, KEY) for n in range(4000)]
    assert owners == [owner_of(f"user{n}", 4, KEY) for n in range(4000)]
    counts = collections.Counter(owners)
    assert sorted(counts) == [0, 1, 2, 3]
    assert min(counts.values()) > 800  # 1,000 each expected


def test_another_key_routes_users_elsewhere() -> None:
    moved = sum(owner_of(f"u{n}", 8, KEY) != owner_of(f"u{n}", 8, b"x" * 16) for n in range(1000))
    assert moved > 700  # 7/8 expected: no one can pick ids that land together


def test_an_authenticated_user_is_handed_to_its_worker() -> None:
    decided = policy().decide(head(), "127.0.0.1")
    assert decided == HandOff(owner_of("alice", 4, KEY), "alice")


def test_a_jwt_user_is_authenticated_by_the_master_with_the_daemon_s_authenticator() -> None:
    jwt_policy = policy({"auth": {"mode": "jwt"}})
    token = jwt.encode({"sub": "bob", "exp": time.time() + 60}, SECRET, algorithm="HS256")
    bearer = f"{UPGRADE}Authorization: Bearer {token}\r\n"
    assert jwt_policy.decide(head("/ws", bearer), "127.0.0.1") == HandOff(
        owner_of("bob", 4, KEY), "bob"
    )
    forged = jwt.encode({"sub": "bob", "exp": time.time() + 60}, "x" * 40, algorithm="HS256")
    refused = jwt_policy.decide(head("/ws", f"{UPGRADE}Authorization: Bearer {forged}\r\n"), "a")
    assert refused == Refusal(401, "invalid signature")


def test_the_refusals_come_in_a_single_daemon_s_order() -> None:
    strict = policy(
        {
            "limits": {"handshakes_per_second_per_address": 1.0, "handshake_burst_per_address": 1},
            "server": {"origins": "https://app.example.com"},
        }
    )
    # 404 before the Origin, 403 before authentication
    assert strict.decide(head("/other"), "10.0.0.1") == Refusal(404, "not found")
    evil = f"{UPGRADE}Origin: https://evil.example.com\r\n"
    assert strict.decide(head("/ws", evil), "10.0.0.2") == Refusal(403, "origin not allowed")
    good = f"{UPGRADE}Origin: https://app.example.com\r\n"
    assert strict.decide(head("/ws", good), "10.0.0.3") == Refusal(
        401, "missing user_id query parameter"
    )
    # the address rate comes first of all, with when to try again
    assert strict.decide(head("/other"), "10.0.0.1") == Refusal(
        429, "too many handshakes from this address", 1.0
    )


def test_the_address_rate_is_one_limit_for_the_whole_daemon() -> None:
    clock = ManualClock()
    config = make_config(
        {"limits": {"handshakes_per_second_per_address": 2.0, "handshake_burst_per_address": 3}}
    )
    auth = Authenticator.from_config(config.auth, config.profile, {})
    rated = HandoffPolicy(config, auth, 8, KEY, clock=clock)
    users = [f"/ws?user_id=u{n}" for n in range(5)]  # users of different workers
    decided = [rated.decide(head(user), "10.1.1.1") for user in users]
    assert [isinstance(d, HandOff) for d in decided] == [True, True, True, False, False]
    clock.advance(0.5)
    assert isinstance(rated.decide(head(users[4]), "10.1.1.1"), HandOff)


def test_a_request_that_is_no_upgrade_goes_to_the_workers_in_turn_with_no_user() -> None:
    plain = policy(workers=3)
    decided = [plain.decide(head("/ws?user_id=alice", ""), "127.0.0.1") for _ in range(4)]
    assert decided == [HandOff(0, ""), HandOff(1, ""), HandOff(2, ""), HandOff(0, "")]


def test_two_origin_headers_are_refused() -> None:
    strict = policy({"server": {"origins": "https://app.example.com"}})
    twice = f"{UPGRADE}Origin: https://app.example.com\r\nOrigin: https://app.example.com\r\n"
    assert strict.decide(head("/ws", twice), "127.0.0.1") == Refusal(403, "origin not allowed")


def test_a_refusal_is_an_http_answer_websockets_clients_read() -> None:
    raw = Refusal(429, "too many handshakes from this address", 0.2).encode()
    response = _parse_response(raw)
    assert (response.status_code, response.reason_phrase) == (429, "Too Many Requests")
    assert response.headers["Retry-After"] == "1"
    assert response.headers["Connection"] == "close"
    assert response.body == b"too many handshakes from this address\n"


def test_a_policy_needs_a_worker() -> None:
    with pytest.raises(ValueError, match="workers must be >= 1"):
        policy(workers=0)


def _parse_response(raw: bytes) -> Response:
    from websockets.streams import StreamReader  # noqa: PLC0415

    reader = StreamReader()
    reader.feed_data(raw)
    reader.feed_eof()
    parser = Response.parse(reader.read_line, reader.read_exact, reader.read_to_eof)
    try:
        next(parser)
    except StopIteration as done:
        response: Response = done.value
        return response
    raise AssertionError("incomplete response")


def test_two_versions_make_no_upgrade_and_two_authorizations_are_refused() -> None:
    twice = f"{UPGRADE}Sec-WebSocket-Version: 13\r\n"
    assert policy(workers=1).decide(head("/ws?user_id=a", twice), "10.2.0.1") == HandOff(0, "")
    jwt_policy = policy({"auth": {"mode": "jwt"}})
    both = f"{UPGRADE}Authorization: Bearer a\r\nAuthorization: Bearer b\r\n"
    assert jwt_policy.decide(head("/ws", both), "10.2.0.2") == Refusal(
        401, "more than one Authorization header"
    )
