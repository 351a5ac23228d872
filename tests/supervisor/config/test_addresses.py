"""Addresses in the configuration: trusted proxies and Sentinel URLs, parsed or refused."""

from __future__ import annotations

import ipaddress

import pytest

from supervisor.config.addresses import SentinelUrl, parse_sentinel_url, parse_trusted_proxies


def test_trusted_proxies_are_addresses_and_networks_separated_by_commas() -> None:
    assert parse_trusted_proxies(" 127.0.0.9, 10.0.0.0/8,,2001:db8::/32 ") == (
        ipaddress.ip_network("127.0.0.9/32"),
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("2001:db8::/32"),
    )
    assert parse_trusted_proxies("") == ()
    assert parse_trusted_proxies("10.1.2.3/8") == (ipaddress.ip_network("10.0.0.0/8"),)


@pytest.mark.parametrize("bad", ["localhost", "10.0.0.0/33", "10.0.0.300", "*"])
def test_a_trusted_proxy_that_is_no_address_is_named(bad: str) -> None:
    with pytest.raises(ValueError, match="is not an IP address or a CIDR network") as caught:
        parse_trusted_proxies(f"127.0.0.1, {bad}")
    assert repr(bad) in str(caught.value)


@pytest.mark.parametrize(
    ("url", "parsed"),
    [
        (
            "redis+sentinel://10.0.0.1:26379,10.0.0.2:26380,10.0.0.3/mymaster",
            SentinelUrl(
                (("10.0.0.1", 26379), ("10.0.0.2", 26380), ("10.0.0.3", 26379)), "mymaster"
            ),
        ),
        (
            "redis+sentinel://:s%40cret@s1:1/ws-ledger/2",
            SentinelUrl((("s1", 1),), "ws-ledger", 2, None, "s@cret"),
        ),
        (
            "redis+sentinel://app:pw@[::1]:26379,[2001:db8::2]/m",
            SentinelUrl((("::1", 26379), ("2001:db8::2", 26379)), "m", 0, "app", "pw"),
        ),
    ],
)
def test_a_sentinel_url_names_the_sentinels_the_master_the_database_and_credentials(
    url: str, parsed: SentinelUrl
) -> None:
    assert parse_sentinel_url(url) == parsed


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("redis://h:26379/m", "must start with redis+sentinel://"),
        ("redis+sentinel://h1:26379", "names no master"),
        ("redis+sentinel://h1:26379/", "names no master"),
        ("redis+sentinel://h1:26379,,h2/m", "empty sentinel address"),
        ("redis+sentinel://h1:0/m", "'h1:0' has a bad port"),
        ("redis+sentinel://h1:x/m", "'h1:x' has a bad port"),
        ("redis+sentinel://:1/m", "':1' has no host"),
        ("redis+sentinel://h1/m/zero", "must be a database number"),
        ("redis+sentinel://h1/m/0/1", "must be a database number"),
        ("redis+sentinel://h1/m?timeout=1", "takes no query"),
    ],
)
def test_a_bad_sentinel_url_says_what_is_wrong(url: str, fragment: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_sentinel_url(url)
    assert fragment in str(caught.value)
