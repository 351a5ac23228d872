"""The abuse limits as pure decisions, with a manual clock."""

from __future__ import annotations

from typing import Any

import attrs
import pytest

from actors.clock import ManualClock
from supervisor.config.load import load_profile
from supervisor.config.schema import Config, LimitsConfig, ServerConfig, parse_origins
from supervisor.front.budget import ConnectionBudget
from supervisor.front.limits import (
    AddressLimiter,
    ConcurrencyGate,
    InboundRateLimit,
    TokenBucket,
)


def test_a_bucket_starts_full_allows_its_burst_then_refuses() -> None:
    bucket = TokenBucket(rate=2.0, burst=3)
    assert [bucket.allow(10.0) for _ in range(4)] == [True, True, True, False]
    assert bucket.retry_after(10.0) == pytest.approx(0.5)


def test_a_bucket_refills_at_its_rate_and_never_beyond_its_burst() -> None:
    bucket = TokenBucket(rate=2.0, burst=3)
    for _ in range(3):
        bucket.allow(0.0)
    assert not bucket.allow(0.4)
    assert bucket.allow(0.5)
    assert bucket.tokens(1000.0) == 3.0
    assert [bucket.allow(1000.0) for _ in range(4)] == [True, True, True, False]


def test_time_going_backwards_gives_no_tokens() -> None:
    bucket = TokenBucket(rate=1.0, burst=1)
    assert bucket.allow(5.0)
    assert not bucket.allow(1.0)
    assert not bucket.allow(5.5)
    assert bucket.allow(6.0)


@pytest.mark.parametrize(("rate", "burst"), [(0.0, 1), (-1.0, 1), (float("inf"), 1), (1.0, 0)])
def test_a_bucket_rejects_a_bad_rate_or_burst(rate: float, burst: int) -> None:
    with pytest.raises(ValueError):
        TokenBucket(rate, burst)


def test_each_address_has_its_own_bucket() -> None:
    clock = ManualClock()
    limiter = AddressLimiter(rate=1.0, burst=2, clock=clock)
    assert limiter.allow("10.0.0.1") and limiter.allow("10.0.0.1")
    assert not limiter.allow("10.0.0.1")
    assert limiter.allow("10.0.0.2")
    assert limiter.retry_after("10.0.0.1") == pytest.approx(1.0)
    clock.advance(1.0)
    assert limiter.allow("10.0.0.1")


def test_the_address_table_is_bounded_and_forgets_the_least_recently_used() -> None:
    clock = ManualClock()
    limiter = AddressLimiter(rate=1.0, burst=1, max_addresses=3, clock=clock)
    for address in ("a", "b", "c"):
        assert limiter.allow(address)
    assert not limiter.allow("a")  # "a" is now the most recently used
    assert limiter.allow("d")  # evicts "b", the least recently used
    assert len(limiter) == 3
    assert "b" not in limiter and "a" in limiter
    assert not limiter.allow("a")  # "a" kept its empty bucket
    for n in range(10_000):
        limiter.allow(f"flood{n}")
    assert len(limiter) == 3


def test_an_explicit_time_overrides_the_clock() -> None:
    limiter = AddressLimiter(rate=1.0, burst=1, clock=ManualClock(start=0.0))
    assert limiter.allow("a", now=100.0)
    assert not limiter.allow("a", now=100.5)
    assert limiter.allow("a", now=101.0)


def test_an_inbound_limit_allows_the_burst_then_the_rate() -> None:
    clock = ManualClock()
    limit = InboundRateLimit(rate=10.0, burst=5, clock=clock)
    assert all(limit.allow() for _ in range(5))
    assert not limit.allow()
    clock.advance(0.1)
    assert limit.allow()
    assert not limit.allow()
    clock.advance(10.0)
    assert sum(limit.allow() for _ in range(20)) == 5


def test_a_steady_sender_under_the_rate_is_never_refused() -> None:
    clock = ManualClock()
    limit = InboundRateLimit(rate=50.0, burst=1, clock=clock)
    for _ in range(1000):
        assert limit.allow()
        clock.advance(0.02)


def test_the_gate_lets_in_at_most_its_limit() -> None:
    gate = ConcurrencyGate(2)
    assert gate.try_enter() and gate.try_enter()
    assert not gate.try_enter()
    gate.leave()
    assert gate.try_enter()
    gate.leave()
    gate.leave()
    gate.leave()  # one too many: never below zero
    assert gate.active == 0
    with pytest.raises(ValueError):
        ConcurrencyGate(0)


# --- the configuration ------------------------------------------------------------


def test_the_limit_defaults_are_the_production_values() -> None:
    limits = Config().limits
    assert limits == LimitsConfig(
        handshakes_per_second_per_address=20.0,
        handshake_burst_per_address=40,
        max_concurrent_handshakes=1000,
        open_timeout=10.0,
        messages_per_second=50.0,
        message_burst=100,
        max_outbound_queue=1000,
        max_handshake_bytes=16384,
        max_inbound_bytes=2 * 1024 * 1024,
        max_outbound_bytes=4 * 1024 * 1024,
    )
    assert load_profile("production", env={}).limits == limits
    assert ConnectionBudget.from_config(Config()) == ConnectionBudget()  # a port's default
    assert Config().server.allowed_origins is None


def test_the_ci_profile_times_out_handshakes_fast() -> None:
    assert load_profile("ci", env={}).limits.open_timeout == 2.0


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("handshakes_per_second_per_address", 0.0),
        ("handshake_burst_per_address", 0),
        ("max_concurrent_handshakes", 0),
        ("open_timeout", 0.0),
        ("messages_per_second", -1.0),
        ("message_burst", 0),
        ("max_outbound_queue", 0),
        ("max_handshake_bytes", 1023),
        ("max_inbound_bytes", 1023),
        ("max_outbound_bytes", 1023),
    ],
)
def test_a_limit_out_of_range_is_refused(field: str, value: float) -> None:
    with pytest.raises(ValueError):
        changes: dict[str, Any] = {field: value}
        attrs.evolve(LimitsConfig(), **changes)


def test_origins_are_parsed_in_one_place() -> None:
    text = " https://app.example.com, https://admin.example.com:8443 "
    assert parse_origins(text) == ("https://app.example.com", "https://admin.example.com:8443")
    assert ServerConfig(origins=text).allowed_origins == parse_origins(text)
    assert ServerConfig(origins="").allowed_origins is None


@pytest.mark.parametrize(
    "bad", ["app.example.com", "https://app.example.com/", "https://a.com,,https://b.com", ","]
)
def test_a_malformed_origin_list_is_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        ServerConfig(origins=bad)
