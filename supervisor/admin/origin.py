"""Whom the admin listener answers when a browser asks: no rebound name, no other site (pure).

A web page open in a browser on the admin listener's host can reach it on
loopback. Without a token (loopback's default) two requests would work:

- a cross-site ``POST /v1/push`` from the page: a "simple" request, which a
  browser sends without asking first (no CORS preflight), only hiding the
  answer from the page;
- any route, answer included, after the page's site points its own name at
  127.0.0.1 (DNS rebinding): to the browser the page and the listener are
  then one origin.

So, on the listener's side, before any route (:func:`refusal`):

- listening on loopback, a ``Host`` that names anything but loopback
  (``localhost``, 127.0.0.0/8, ``::1``) is refused;
- an ``Origin`` other than the listener's own (the scheme's host and port
  equal to ``Host``) is refused: browsers send one with every cross-origin
  request and with every ``POST``.

Clients that are not browsers (curl, Prometheus, the master asking its
workers) send no ``Origin``; a request without ``Host`` (HTTP/1.0) is not a
browser's either. Off loopback the listener needs a token (the daemon
refuses to start without one), which no other site's page holds.
"""

from __future__ import annotations

import ipaddress
import urllib.parse

__all__ = ["is_loopback_host", "refusal"]


def is_loopback_host(name: str) -> bool:
    """True for ``localhost`` and for a loopback address (127.0.0.0/8, ``::1``)."""
    if name.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def refusal(host: str | None, origin: str | None, *, on_loopback: bool) -> str | None:
    """Why a request with these ``Host`` and ``Origin`` headers is refused (403), or None.

    ``on_loopback``: the listener is bound to a loopback address.
    """
    if host is not None and on_loopback and not is_loopback_host(_name(host)):
        return (
            f"Host {host[:100]!r} is not loopback: this listener answers on loopback only "
            "(a page whose name was pointed at 127.0.0.1?)"
        )
    if origin is not None and (host is None or _authority(origin) != host.lower()):
        return (
            f"Origin {origin[:100]!r} is another site's: the admin routes answer "
            "no other site's page"
        )
    return None


def _name(authority: str) -> str:
    """The host name of ``host[:port]`` (an IPv6 address without its brackets)."""
    try:
        return urllib.parse.urlsplit("//" + authority).hostname or ""
    except ValueError:  # an unclosed bracket
        return ""


def _authority(origin: str) -> str | None:
    """``host[:port]`` of an Origin, as a browser's ``Host`` would say it; None for ``null``."""
    parts = urllib.parse.urlsplit(origin)
    if not parts.scheme or not parts.netloc:
        return None
    return parts.netloc.lower()
