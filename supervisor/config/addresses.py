"""Addresses in the configuration: trusted proxies and Redis Sentinel URLs (pure parsing).

Each parser raises ValueError saying precisely what is wrong; the schema's
validators (:mod:`supervisor.config.schema`) report it under the key's path.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import unquote

import attrs

__all__ = [
    "SENTINEL_SCHEME",
    "SentinelUrl",
    "TrustedNetwork",
    "parse_sentinel_url",
    "parse_trusted_proxies",
]

TrustedNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_trusted_proxies(text: str) -> tuple[TrustedNetwork, ...]:
    """The networks in ``[server] trusted_proxies``: addresses or CIDRs, comma-separated.

    Raises ValueError naming the first entry that is neither.
    """
    networks = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ValueError(
                f"{item[:60]!r} is not an IP address or a CIDR network (like 10.0.0.0/8)"
            ) from None
    return tuple(networks)


@attrs.frozen
class SentinelUrl:
    """A ``redis+sentinel://`` URL, parsed: where the sentinels are and which master to ask for."""

    sentinels: tuple[tuple[str, int], ...]
    """The sentinels' ``(host, port)``, in the URL's order (26379 when a port is left out)."""
    service: str
    """The master's name, as the sentinels know it (``sentinel monitor <name> ...``)."""
    db: int = 0
    username: str | None = None
    password: str | None = None
    """Credentials for the master and its replicas (the sentinels are asked without them)."""


SENTINEL_SCHEME = "redis+sentinel"
_SENTINEL_SHAPE = "redis+sentinel://[[user]:password@]host[:port][,host[:port]...]/master_name[/db]"


def parse_sentinel_url(url: str) -> SentinelUrl:
    """``redis+sentinel://[[user]:password@]h1[:p1],h2[:p2]/master_name[/db]``.

    Raises ValueError saying precisely what is wrong.
    """
    scheme, sep, rest = url.partition("://")
    if scheme != SENTINEL_SCHEME or not sep:
        raise ValueError(f"must start with {SENTINEL_SCHEME}://")
    if "?" in rest or "#" in rest:
        raise ValueError(f"takes no query or fragment: {_SENTINEL_SHAPE}")
    location, _, path = rest.partition("/")
    credentials, at, hosts = location.rpartition("@")
    username = password = None
    if at:
        user, colon, secret = credentials.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon else None
    sentinels = []
    for item in hosts.split(","):
        host, port = _sentinel_address(item.strip())
        sentinels.append((host, port))
    parts = path.split("/") if path else []
    if not parts or not parts[0]:
        raise ValueError(f"names no master after the sentinels: {_SENTINEL_SHAPE}")
    if len(parts) > 2 or (len(parts) == 2 and not (parts[1].isascii() and parts[1].isdigit())):
        raise ValueError(f"the part after the master name must be a database number: {path!r}")
    db = int(parts[1]) if len(parts) == 2 else 0
    return SentinelUrl(tuple(sentinels), unquote(parts[0]), db, username, password)


def _sentinel_address(item: str) -> tuple[str, int]:
    if not item:
        raise ValueError(f"names an empty sentinel address: {_SENTINEL_SHAPE}")
    if item.startswith("["):  # [::1]:26379
        host, _, tail = item[1:].partition("]")
        port_text = tail.removeprefix(":") if tail else "26379"
    elif item.count(":") == 1:
        host, port_text = item.split(":")
    else:
        host, port_text = item, "26379"
    if not host:
        raise ValueError(f"sentinel address {item[:60]!r} has no host")
    if not (port_text.isascii() and port_text.isdigit() and 0 < int(port_text) <= 65535):
        raise ValueError(f"sentinel address {item[:60]!r} has a bad port")
    return host, int(port_text)
