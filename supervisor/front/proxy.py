"""Behind a load balancer: the PROXY protocol and which proxies to believe (pure).

No I/O, no clock, no exceptions for bad input: every function takes bytes
or strings and answers at once, so that the front's connection
(:mod:`supervisor.front.connection`, on the event loop) and a process that
reads request heads before handing sockets over can both call them.

- :func:`parse_proxy_header`: the PROXY protocol header at the start of a
  connection, v1 (text) or v2 (binary), as HAProxy sends it
  (https://www.haproxy.org/download/2.6/doc/proxy-protocol.txt). It answers
  ``None`` (not enough bytes yet), a :class:`ProxyHeader` (with the number of
  bytes it took; what follows is the client's own stream), or a
  :class:`BadProxyHeader` (the connection must be dropped: the spec forbids
  guessing, so a trusted peer that sends no header, or a malformed one, is
  never served as if it had sent HTTP).
- :class:`TrustedProxies`: whether a peer is a proxy to believe
  (``[server] trusted_proxies``), whether it must open with a PROXY header
  (``proxy_protocol``), and the client's address given the forwarding header
  the proxies write (``forwarded_header``: ``X-Forwarded-For`` or RFC 7239
  ``Forwarded``). A peer that is not trusted is its own client, whatever it
  sends.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Sequence
from typing import Literal

import attrs

from supervisor.config.addresses import TrustedNetwork, parse_trusted_proxies
from supervisor.config.schema import ForwardedHeader

__all__ = [
    "MAX_PROXY_HEADER",
    "PROXY_V1_MAX",
    "PROXY_V2_SIGNATURE",
    "BadProxyHeader",
    "ProxyHeader",
    "TrustedProxies",
    "crc32c",
    "parse_proxy_header",
]

PROXY_V1_MAX = 107
"""The longest v1 line, CRLF included (spec 2.1)."""
PROXY_V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
"""The 12 bytes that open a v2 header."""
MAX_PROXY_HEADER = 16 + 216 + 1024
"""The longest header accepted: v2's fixed part, UNIX addresses and 1 KiB of TLVs."""

_V1_PREFIX = b"PROXY "
_V2_ADDRESS_LENGTH = {0x1: 12, 0x2: 36, 0x3: 216}  # INET, INET6, UNIX: the family nibble
_CRC32C_TLV = 0x03

Family = Literal["TCP4", "TCP6", "UNIX", "UNKNOWN"]
Address = tuple[str, int] | str | None


@attrs.frozen
class ProxyHeader:
    """A complete PROXY header: who the client is, as the proxy says.

    ``source`` and ``destination`` are ``(host, port)`` over TCP, a path over
    UNIX, or None when the header carries no address (v1 ``UNKNOWN``, v2
    ``LOCAL`` or family ``UNSPEC``): the socket's own addresses stand then.
    A v4-mapped IPv6 address (``::ffff:a.b.c.d``) is given as the IPv4
    address it stands for, so that one client has one limiter key.
    """

    version: int
    """1 (text) or 2 (binary)."""
    command: Literal["PROXY", "LOCAL"]
    """LOCAL: the proxy speaks for itself (a health check); v1 has only PROXY."""
    family: Family
    source: Address
    destination: Address
    length: int
    """The bytes the header took at the start of the stream."""
    tlvs: tuple[tuple[int, bytes], ...] = ()
    """v2's type-length-value records after the addresses, in order."""

    @property
    def client(self) -> tuple[str, int] | None:
        """The client's ``(host, port)``; None when the socket's peer stands."""
        if self.command == "PROXY" and isinstance(self.source, tuple):
            return self.source
        return None


@attrs.frozen
class BadProxyHeader:
    """Not a PROXY header, or a malformed one: the connection is dropped."""

    reason: str


Parsed = ProxyHeader | BadProxyHeader | None


def parse_proxy_header(data: bytes | bytearray, limit: int = MAX_PROXY_HEADER) -> Parsed:
    """The PROXY header at the start of ``data`` (see the module docstring).

    ``limit`` caps a v2 header's length; a v1 line is at most 107 bytes.
    Called again with more bytes, it answers the same way as if they had
    all come at once.
    """
    head = bytes(data[: max(limit, PROXY_V1_MAX) + 1])
    if _V1_PREFIX.startswith(head[: len(_V1_PREFIX)]):
        return None if len(head) < len(_V1_PREFIX) else _parse_v1(head)
    if PROXY_V2_SIGNATURE.startswith(head[: len(PROXY_V2_SIGNATURE)]):
        return None if len(head) < len(PROXY_V2_SIGNATURE) else _parse_v2(head, limit)
    return BadProxyHeader(f"not a PROXY header: starts with {head[:8]!r}")


# --- v1 -------------------------------------------------------------------------------


def _parse_v1(data: bytes) -> Parsed:
    end = data.find(b"\r\n", 0, PROXY_V1_MAX)
    if end < 0:
        if len(data) >= PROXY_V1_MAX or b"\n" in data:
            return BadProxyHeader("PROXY v1 line without CRLF within 107 bytes")
        return None
    raw = data[:end]
    if not raw.isascii():
        return BadProxyHeader("PROXY v1 line is not ASCII")
    line = raw.decode("ascii")
    parts = line.split(" ")
    if len(parts) >= 2 and parts[1] == "UNKNOWN":  # anything may follow, up to CRLF
        return ProxyHeader(1, "PROXY", "UNKNOWN", None, None, end + 2)
    if len(parts) != 6 or parts[1] not in ("TCP4", "TCP6"):
        return BadProxyHeader(f"malformed PROXY v1 line: {line[:PROXY_V1_MAX]!r}")
    _, family, src, dst, sport, dport = parts
    version = 4 if family == "TCP4" else 6
    fields = (_v1_host(src, version), _v1_host(dst, version), _v1_port(sport), _v1_port(dport))
    for field in fields:
        if isinstance(field, BadProxyHeader):
            return field
    src_host, dst_host, src_port, dst_port = fields
    assert isinstance(src_host, str) and isinstance(dst_host, str)
    assert isinstance(src_port, int) and isinstance(dst_port, int)
    return ProxyHeader(
        1, "PROXY", "TCP4" if version == 4 else "TCP6",
        (src_host, src_port), (dst_host, dst_port), end + 2,
    )  # fmt: skip


def _v1_host(text: str, version: int) -> str | BadProxyHeader:
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return BadProxyHeader(f"bad address in PROXY v1 line: {text[:45]!r}")
    if address.version != version:
        return BadProxyHeader(f"IPv{address.version} address in a TCP{version} line")
    return _unmapped(address)


def _v1_port(text: str) -> int | BadProxyHeader:
    if not (text.isascii() and text.isdigit()) or (len(text) > 1 and text[0] == "0"):
        return BadProxyHeader(f"bad port in PROXY v1 line: {text[:10]!r}")
    if int(text) > 65535:
        return BadProxyHeader(f"port out of range in PROXY v1 line: {text[:10]}")
    return int(text)


def _unmapped(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


# --- v2 -------------------------------------------------------------------------------


def _parse_v2(data: bytes, limit: int) -> Parsed:
    if len(data) < 16:
        return None
    version, command = data[12] >> 4, data[12] & 0x0F
    family, transport = data[13] >> 4, data[13] & 0x0F
    total = 16 + struct.unpack_from("!H", data, 14)[0]
    if version != 2:
        return BadProxyHeader(f"PROXY v2 signature with version {version}")
    if command not in (0x0, 0x1):
        return BadProxyHeader(f"PROXY v2 header with unknown command {command}")
    if total > limit:
        return BadProxyHeader(f"PROXY v2 header of {total} bytes, over the limit of {limit}")
    if len(data) < total:
        return None
    body = data[16:total]
    if command == 0x0:  # LOCAL: whatever the family, the body is skipped
        return ProxyHeader(2, "LOCAL", "UNKNOWN", None, None, total)
    need = _V2_ADDRESS_LENGTH.get(family)
    if need is None or transport not in (0x1, 0x2):  # UNSPEC: the socket's addresses stand
        return ProxyHeader(2, "PROXY", "UNKNOWN", None, None, total)
    if len(body) < need:
        return BadProxyHeader(f"PROXY v2 address block of {len(body)} bytes, needs {need}")
    tlvs = _tlvs(data[:total], 16 + need)
    if isinstance(tlvs, BadProxyHeader):
        return tlvs
    src: Address
    dst: Address
    if family == 0x1:
        src = (str(ipaddress.IPv4Address(body[0:4])), struct.unpack_from("!H", body, 8)[0])
        dst = (str(ipaddress.IPv4Address(body[4:8])), struct.unpack_from("!H", body, 10)[0])
        name: Family = "TCP4"
    elif family == 0x2:
        src = (_unmapped(ipaddress.IPv6Address(body[0:16])), struct.unpack_from("!H", body, 32)[0])
        dst = (_unmapped(ipaddress.IPv6Address(body[16:32])), struct.unpack_from("!H", body, 34)[0])
        name = "TCP6"
    else:
        src = body[0:108].split(b"\x00", 1)[0].decode("utf-8", "replace")
        dst = body[108:216].split(b"\x00", 1)[0].decode("utf-8", "replace")
        name = "UNIX"
    return ProxyHeader(2, "PROXY", name, src, dst, total, tlvs)


def _tlvs(header: bytes, start: int) -> tuple[tuple[int, bytes], ...] | BadProxyHeader:
    """The TLVs from ``start`` to the end of ``header``; a CRC32C one is checked."""
    found: list[tuple[int, bytes]] = []
    at = start
    while at < len(header):
        if len(header) - at < 3:
            return BadProxyHeader("truncated PROXY v2 TLV")
        kind, size = header[at], struct.unpack_from("!H", header, at + 1)[0]
        if at + 3 + size > len(header):
            return BadProxyHeader(f"PROXY v2 TLV 0x{kind:02x} runs past the header")
        value = header[at + 3 : at + 3 + size]
        if kind == _CRC32C_TLV:
            if size != 4:
                return BadProxyHeader(f"PROXY v2 CRC32C TLV of {size} bytes, not 4")
            zeroed = header[: at + 3] + b"\x00" * 4 + header[at + 7 :]
            if crc32c(zeroed) != struct.unpack("!I", value)[0]:
                return BadProxyHeader("PROXY v2 CRC32C mismatch")
        found.append((kind, value))
        at += 3 + size
    return tuple(found)


def _crc32c_table() -> tuple[int, ...]:
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return tuple(table)


_CRC_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli), as v2's CRC32C TLV carries it."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _CRC_TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


# --- which peers to believe -----------------------------------------------------------


class TrustedProxies:
    """The proxies this node believes, and what it believes of them.

    Immutable. ``networks`` are the trusted peers (addresses and CIDR
    networks); ``proxy_protocol`` says that a trusted peer opens every
    connection with a PROXY header; ``header`` names the one forwarding
    header the trusted proxies write (``none``: headers are never read). Never
    "whichever header is present": a proxy passes a header it does not
    write through untouched, so a client could forge it.
    """

    __slots__ = ("header", "networks", "proxy_protocol")

    def __init__(
        self,
        networks: Sequence[TrustedNetwork] = (),
        *,
        proxy_protocol: bool = False,
        header: ForwardedHeader = "none",
    ) -> None:
        self.networks = tuple(networks)
        self.proxy_protocol = proxy_protocol
        self.header = header

    @classmethod
    def from_text(
        cls, text: str, *, proxy_protocol: bool = False, header: ForwardedHeader = "none"
    ) -> TrustedProxies:
        """From ``[server] trusted_proxies`` (ValueError naming a bad entry)."""
        return cls(parse_trusted_proxies(text), proxy_protocol=proxy_protocol, header=header)

    def __bool__(self) -> bool:
        return bool(self.networks)

    def trusts(self, host: str) -> bool:
        """True if ``host`` (an IP address, as a socket gives it) is a trusted proxy."""
        if not self.networks:
            return False
        try:
            address = ipaddress.ip_address(host.split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in network for network in self.networks)

    def expects_header(self, peer: str) -> bool:
        """True if a connection from ``peer`` must open with a PROXY header."""
        return self.proxy_protocol and self.trusts(peer)

    def client(self, host: str, header_values: Sequence[str]) -> str:
        """The client's address: ``host``, or what the trusted proxies say it is.

        ``host`` is the connection's peer (the PROXY header's source when it
        had one); ``header_values`` are the values of the configured header in
        the request. Only while the address in hand is a trusted proxy, the
        walk steps one hop left in the chain, and it stops at the first
        address that is not trusted: that is the client. An entry that is not
        an address (``unknown``, an obfuscated ``_hidden``) stops the walk at
        the proxy that wrote it.
        """
        if self.header == "none" or not header_values or not self.trusts(host):
            return host
        if self.header == "forwarded":
            chain = _forwarded_for(header_values)
        else:
            chain = [part.strip() for value in header_values for part in value.split(",")]
        for entry in reversed(chain):
            try:
                address = ipaddress.ip_address(entry)
            except ValueError:
                return host
            host = _unmapped(address)
            if not self.trusts(host):
                return host
        return host


def _forwarded_for(values: Sequence[str]) -> list[str]:
    """The ``for=`` nodes of RFC 7239 ``Forwarded`` values, left to right, without ports."""
    nodes = []
    for element in ",".join(values).split(","):
        for pair in element.split(";"):
            name, _, raw = pair.strip().partition("=")
            if name.strip().lower() != "for":
                continue
            node = raw.strip().strip('"')
            if node.startswith("["):  # "[2001:db8::1]:4711"
                node = node[1 : node.find("]")] if "]" in node else ""
            elif node.count(":") == 1:  # "192.0.2.60:4711"
                node = node.split(":", 1)[0]
            nodes.append(node)
    return nodes
