"""The PROXY protocol parser and the trusted-proxy rules, as pure functions of bytes and strings."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from supervisor.front.proxy import (
    MAX_PROXY_HEADER,
    PROXY_V2_SIGNATURE,
    BadProxyHeader,
    ProxyHeader,
    TrustedProxies,
    crc32c,
    parse_proxy_header,
)
from tests.supervisor.front.proxy_headers import v1, v2

HTTP = b"GET /ws HTTP/1.1\r\nHost: x\r\n\r\n"


def parsed(data: bytes) -> ProxyHeader:
    header = parse_proxy_header(data)
    assert isinstance(header, ProxyHeader), header
    return header


def refused(data: bytes) -> str:
    header = parse_proxy_header(data)
    assert isinstance(header, BadProxyHeader), header
    return header.reason


# --- v1 ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "family", "source", "destination"),
    [
        (
            b"PROXY TCP4 127.0.0.2 127.0.0.1 40000 8000\r\n",
            "TCP4",
            ("127.0.0.2", 40000),
            ("127.0.0.1", 8000),
        ),
        (b"PROXY TCP6 2001:db8::1 ::1 65535 443\r\n", "TCP6", ("2001:db8::1", 65535), ("::1", 443)),
        (b"PROXY TCP6 ::ffff:10.1.2.3 ::1 1 2\r\n", "TCP6", ("10.1.2.3", 1), ("::1", 2)),
        (b"PROXY UNKNOWN\r\n", "UNKNOWN", None, None),
        (b"PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n", "UNKNOWN", None, None),
    ],
)
def test_a_v1_line_gives_the_client_and_the_bytes_it_took(
    line: bytes, family: str, source: object, destination: object
) -> None:
    header = parsed(line + HTTP)
    assert (header.version, header.command, header.family) == (1, "PROXY", family)
    assert (header.source, header.destination, header.length) == (source, destination, len(line))
    assert header.client == source


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"PROXY TCP4 127.0.0.2 127.0.0.1 040000 8000\r\n", "bad port"),
        (b"PROXY TCP4 127.0.0.2 127.0.0.1 70000 8000\r\n", "port out of range"),
        (b"PROXY TCP4 ::1 127.0.0.1 1 2\r\n", "IPv6 address in a TCP4 line"),
        (b"PROXY TCP4 127.0.0.x 127.0.0.1 1 2\r\n", "bad address"),
        (b"PROXY TCP5 127.0.0.2 127.0.0.1 1 2\r\n", "malformed PROXY v1 line"),
        (b"PROXY TCP4 127.0.0.2 127.0.0.1 1\r\n", "malformed PROXY v1 line"),
        (b"PROXY TCP4  127.0.0.2 127.0.0.1 1 2\r\n", "malformed PROXY v1 line"),
        (b"PROXY TCP4 127.0.0.2 127.0.0.1 1 2\n", "without CRLF"),
        (b"PROXY " + b"A" * 120, "without CRLF within 107 bytes"),
        (b"PROXY TCP4 \xc3\xa9 127.0.0.1 1 2\r\n", "not ASCII"),
        (HTTP, "not a PROXY header"),
        (b"\x16\x03\x01\x02\x00", "not a PROXY header"),
    ],
)
def test_a_malformed_v1_line_or_no_header_at_all_is_refused_with_the_reason(
    data: bytes, reason: str
) -> None:
    assert reason in refused(data)


# --- v2 ---------------------------------------------------------------------------------


def test_a_v2_header_over_ipv4_gives_the_client_and_its_length() -> None:
    data = v2(("127.0.0.3", 5555), ("127.0.0.1", 80))
    header = parsed(data + HTTP)
    assert header == ProxyHeader(2, "PROXY", "TCP4", ("127.0.0.3", 5555), ("127.0.0.1", 80), 28)
    assert len(data) == 28


def test_a_v2_header_over_ipv6_maps_a_v4_mapped_client_back_to_ipv4() -> None:
    assert parsed(v2(("2001:db8::7", 1), ("::1", 2))).client == ("2001:db8::7", 1)
    assert parsed(v2(("::ffff:10.1.2.3", 1), ("::1", 2))).client == ("10.1.2.3", 1)


def test_a_v2_header_over_unix_sockets_has_paths_and_no_client_address() -> None:
    data = v2("/run/client.sock", "/run/ws.sock")
    header = parsed(data + HTTP)
    assert (header.family, header.source, header.destination) == (
        "UNIX",
        "/run/client.sock",
        "/run/ws.sock",
    )
    assert (header.length, header.client) == (16 + 216, None)


def test_a_v2_local_header_as_a_health_check_sends_leaves_the_socket_peer_standing() -> None:
    check = v2(None, None, local=True)
    assert check == PROXY_V2_SIGNATURE + b"\x20\x00\x00\x00"  # as HAProxy 2.6 sends it
    header = parsed(check + HTTP)
    assert (header.command, header.client, header.length) == ("LOCAL", None, 16)
    with_addresses = v2(("1.2.3.4", 1), ("5.6.7.8", 2), local=True, tlvs=[(0x04, b"xx")])
    header = parsed(with_addresses + HTTP)
    assert (header.command, header.client, header.length) == ("LOCAL", None, len(with_addresses))


def test_a_v2_proxy_header_of_family_unspec_leaves_the_socket_peer_standing() -> None:
    header = parsed(v2(None, None))
    assert (header.command, header.family, header.client) == ("PROXY", "UNKNOWN", None)


def test_v2_tlvs_are_kept_in_order_and_a_crc32c_one_is_checked() -> None:
    tlvs = [(0x05, b"uid-1"), (0xE0, b"\x00" * 300), (0x04, b"")]
    data = v2(("127.0.0.2", 1), ("127.0.0.1", 2), tlvs=tlvs, crc=True)
    header = parsed(data + HTTP)
    assert header.length == len(data)
    assert header.tlvs[:3] == tuple(tlvs) and header.tlvs[3][0] == 0x03
    corrupt = data[:-2] + bytes([data[-2] ^ 1]) + data[-1:]
    assert "CRC32C mismatch" in refused(corrupt)


def test_the_crc32c_is_the_castagnoli_checksum() -> None:
    assert crc32c(b"123456789") == 0xE3069283  # the standard check value
    assert crc32c(b"") == 0


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (PROXY_V2_SIGNATURE + b"\x21\x11" + struct.pack("!H", 60000), "over the limit"),
        (PROXY_V2_SIGNATURE + b"\x31\x11\x00\x0c" + b"\x00" * 12, "version 3"),
        (PROXY_V2_SIGNATURE + b"\x22\x11\x00\x0c" + b"\x00" * 12, "unknown command 2"),
        (PROXY_V2_SIGNATURE + b"\x21\x11\x00\x04" + b"\x00" * 4, "address block of 4 bytes"),
        (PROXY_V2_SIGNATURE + b"\x21\x11\x00\x0e" + b"\x00" * 12 + b"\x05\x00", "truncated"),
        (PROXY_V2_SIGNATURE + b"\x21\x11\x00\x10" + b"\x00" * 12 + b"\x05\x00\x09x", "runs past"),
        (PROXY_V2_SIGNATURE + b"\x21\x11\x00\x10" + b"\x00" * 12 + b"\x03\x00\x01x", "not 4"),
        (b"\r\n\r\n\x00\r\nQUIX\n\x21\x11\x00\x0c" + b"\x00" * 12, "not a PROXY header"),
    ],
)
def test_a_malformed_v2_header_is_refused_with_the_reason(data: bytes, reason: str) -> None:
    assert reason in refused(data)


def test_a_v2_header_longer_than_the_limit_given_is_refused() -> None:
    data = v2(("127.0.0.2", 1), ("127.0.0.1", 2), tlvs=[(0xE0, b"\x00" * 100)])
    assert isinstance(parse_proxy_header(data, limit=len(data)), ProxyHeader)
    header = parse_proxy_header(data, limit=len(data) - 1)
    assert isinstance(header, BadProxyHeader) and "over the limit" in header.reason
    assert MAX_PROXY_HEADER == 16 + 216 + 1024


# --- incremental --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "header",
    [
        v1(("127.0.0.2", 1), ("127.0.0.1", 2)),
        v1(("2001:db8::1", 65535), ("::1", 2)),
        v2(("127.0.0.2", 1), ("127.0.0.1", 2), tlvs=[(5, b"x")], crc=True),
        v2(None, None, local=True),
    ],
)
def test_every_prefix_of_a_header_asks_for_more_bytes_and_the_whole_one_parses(
    header: bytes,
) -> None:
    stream = header + HTTP
    assert [parse_proxy_header(stream[:n]) for n in range(len(header))] == [None] * len(header)
    assert parsed(stream).length == len(header)


@given(st.binary(max_size=300))
def test_any_bytes_get_an_answer_and_never_an_exception(data: bytes) -> None:
    answer = parse_proxy_header(data)
    assert answer is None or isinstance(answer, ProxyHeader | BadProxyHeader)
    if isinstance(answer, ProxyHeader):
        assert 0 < answer.length <= len(data)


@given(
    st.ip_addresses(v=4).map(str),
    st.integers(0, 65535),
    st.integers(1, 40),
)
def test_a_v2_header_split_anywhere_parses_to_the_same_client(
    host: str, port: int, cut: int
) -> None:
    data = v2((host, port), ("127.0.0.1", 8765), tlvs=[(5, b"id")], crc=True) + HTTP
    first = parse_proxy_header(data[:cut])
    whole = parsed(data)
    assert first is None or first == whole
    assert whole.client == (host, port)


# --- trusted proxies ------------------------------------------------------------------------

TRUST = "127.0.0.9, 10.0.0.0/8, 2001:db8::/32"


@pytest.mark.parametrize(
    ("host", "trusted"),
    [
        ("127.0.0.9", True),
        ("10.200.3.4", True),
        ("::ffff:10.0.0.1", True),
        ("2001:db8::5", True),
        ("fe80::1%eth0", False),
        ("127.0.0.1", False),
        ("", False),
        ("not-an-address", False),
    ],
)
def test_a_peer_is_trusted_only_if_it_is_in_one_of_the_networks(host: str, trusted: bool) -> None:
    assert TrustedProxies.from_text(TRUST).trusts(host) is trusted


def test_nobody_is_trusted_by_default_and_a_bad_entry_is_named() -> None:
    nobody = TrustedProxies()
    assert not nobody and not nobody.trusts("127.0.0.1")
    with pytest.raises(ValueError, match=r"'10\.0\.0\.300' is not an IP address or a CIDR"):
        TrustedProxies.from_text("127.0.0.9, 10.0.0.300")


def test_only_a_trusted_peer_must_open_with_a_proxy_header_and_only_when_configured() -> None:
    with_header = TrustedProxies.from_text("127.0.0.9", proxy_protocol=True)
    assert with_header.expects_header("127.0.0.9")
    assert not with_header.expects_header("127.0.0.2")
    assert not TrustedProxies.from_text("127.0.0.9").expects_header("127.0.0.9")


@pytest.mark.parametrize(
    ("header", "peer", "values", "client"),
    [
        ("x-forwarded-for", "127.0.0.9", ["127.0.0.2"], "127.0.0.2"),
        ("x-forwarded-for", "127.0.0.9", ["6.6.6.6, 127.0.0.2"], "127.0.0.2"),  # forged left part
        ("x-forwarded-for", "127.0.0.9", ["6.6.6.6", "127.0.0.3, 10.1.1.1"], "127.0.0.3"),
        ("x-forwarded-for", "127.0.0.1", ["6.6.6.6"], "127.0.0.1"),  # untrusted peer: ignored
        ("x-forwarded-for", "127.0.0.9", [], "127.0.0.9"),
        ("x-forwarded-for", "127.0.0.9", ["garbage"], "127.0.0.9"),
        ("x-forwarded-for", "127.0.0.9", ["10.0.0.1, 10.0.0.2"], "10.0.0.1"),  # all proxies
        ("x-forwarded-for", "127.0.0.9", ["::ffff:127.0.0.4"], "127.0.0.4"),
        (
            "forwarded",
            "127.0.0.9",
            ['for=6.6.6.6, for="[2001:db9::5]:4711";proto=https'],
            "2001:db9::5",
        ),
        ("forwarded", "127.0.0.9", ["for=127.0.0.4:1234"], "127.0.0.4"),
        ("forwarded", "127.0.0.9", ["for=unknown"], "127.0.0.9"),
        ("forwarded", "127.0.0.9", ["for=_hidden, for=10.0.0.2"], "10.0.0.2"),
        ("forwarded", "127.0.0.9", ["proto=https"], "127.0.0.9"),
        ("none", "127.0.0.9", ["6.6.6.6"], "127.0.0.9"),  # PROXY protocol only: never read
    ],
)
def test_the_client_is_the_last_untrusted_hop_of_the_configured_header(
    header: str, peer: str, values: list[str], client: str
) -> None:
    proxies = TrustedProxies.from_text(TRUST, header=header)  # type: ignore[arg-type]
    assert proxies.client(peer, values) == client
