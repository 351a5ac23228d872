"""Which Host and Origin headers the admin listener refuses (the pure rule)."""

from __future__ import annotations

import pytest

from supervisor.admin.origin import is_loopback_host, refusal

pytestmark = pytest.mark.timeout(10)


@pytest.mark.parametrize("name", ["localhost", "LOCALHOST", "127.0.0.1", "127.9.8.7", "::1"])
def test_localhost_and_loopback_addresses_are_loopback(name: str) -> None:
    assert is_loopback_host(name)


@pytest.mark.parametrize("name", ["0.0.0.0", "10.0.0.1", "::", "example.com", "localhost.evil", ""])
def test_other_names_and_addresses_are_not_loopback(name: str) -> None:
    assert not is_loopback_host(name)


@pytest.mark.parametrize(
    "host", [None, "127.0.0.1", "127.0.0.1:8766", "localhost:8766", "[::1]:8766", "[::1]"]
)
def test_a_loopback_host_without_an_origin_is_answered(host: str | None) -> None:
    assert refusal(host, None, on_loopback=True) is None


@pytest.mark.parametrize("host", ["evil.example:8766", "evil.example", "10.0.0.5:8766", "[::1"])
def test_on_loopback_a_host_naming_anything_else_is_refused_naming_it(host: str) -> None:
    why = refusal(host, None, on_loopback=True)
    assert why is not None and repr(host) in why and "loopback" in why


def test_off_loopback_any_host_is_answered() -> None:
    assert refusal("admin.internal:8766", None, on_loopback=False) is None


@pytest.mark.parametrize(
    ("host", "origin"),
    [
        ("127.0.0.1:8766", "http://127.0.0.1:8766"),
        ("localhost:8766", "http://LOCALHOST:8766"),
        ("[::1]:8766", "http://[::1]:8766"),
        ("localhost", "https://localhost"),
    ],
)
def test_the_listeners_own_origin_is_answered(host: str, origin: str) -> None:
    assert refusal(host, origin, on_loopback=True) is None


@pytest.mark.parametrize(
    ("host", "origin"),
    [
        ("127.0.0.1:8766", "https://evil.example"),
        ("127.0.0.1:8766", "http://127.0.0.1:3000"),  # another port: another site
        ("127.0.0.1:8766", "http://localhost:8766"),  # another name: another origin
        ("127.0.0.1:8766", "null"),  # a sandboxed page, a file
        (None, "http://127.0.0.1:8766"),
    ],
)
def test_another_sites_origin_is_refused_naming_it(host: str | None, origin: str) -> None:
    why = refusal(host, origin, on_loopback=True)
    assert why is not None and repr(origin) in why
