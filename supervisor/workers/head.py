"""The master's reading of a request head: where it ends, and what it asks (pure).

Under ``serve --workers N`` the master reads each connection's request
head before it hands the connection to a worker. Reading is in two steps,
each a function of the bytes received so far, so that another step (a
PROXY protocol header, read before the head) can be put in front of them:

- :func:`head_length`: how many bytes the head takes, once its blank line
  has arrived (None before; :class:`HeadError` 431 past :data:`MAX_HEAD`);
- :func:`parse_head`: the request line and the headers, as a
  :class:`RequestHead`, or :class:`HeadError` 400 with the reason.

The worker's websockets parses the same bytes again when it resumes the
connection, and refuses with its own precise reason what passes here but
is no valid handshake. Nothing here does I/O or keeps state.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlsplit

import attrs
from websockets.datastructures import Headers

from supervisor.errors import HeadError

__all__ = ["MAX_HEAD", "RequestHead", "head_length", "parse_head"]

MAX_HEAD = 16 * 1024
"""The longest request head the master reads (431 beyond): room for an 8 KiB token."""

_MAX_HEADERS = 128  # as websockets' own parser
_TOKEN = re.compile(rb"[-!#$%&'*+.^_`|~0-9A-Za-z]+")
_VALUE = re.compile(rb"[\t\x20-\x7e]*")  # what websockets' Headers allows of an ASCII value
_END = b"\r\n\r\n"


@attrs.frozen(eq=False)
class RequestHead:
    """A request line and its headers (names case-insensitive, repeated ones kept).

    ``path`` is the target's path without its query; ``query`` the target's
    parameters (the last of a repeated one), as ``dict(parse_qsl(...))``.
    """

    method: str
    target: str
    headers: Headers
    path: str
    query: dict[str, str]


def head_length(received: bytes) -> int | None:
    """The length of the head at the start of ``received`` with its blank line, or None yet.

    Raises :class:`HeadError` (431) when :data:`MAX_HEAD` bytes hold no end.
    """
    end = received.find(_END, 0, MAX_HEAD)
    if end >= 0:
        return end + len(_END)
    if len(received) >= MAX_HEAD:
        raise HeadError(431, f"request line and headers exceed {MAX_HEAD} bytes")
    return None


def parse_head(head: bytes) -> RequestHead:
    """The request line and headers of ``head`` (up to its blank line); HeadError 400 if bad."""
    lines = head.removesuffix(_END).split(b"\r\n")
    parts = lines[0].split(b" ")
    if len(parts) != 3 or parts[2] != b"HTTP/1.1":
        raise HeadError(400, "malformed request line: expected 'GET <target> HTTP/1.1'")
    method, target = parts[0].decode("ascii", "replace"), parts[1].decode("ascii", "replace")
    if not target.startswith("/"):
        raise HeadError(400, "the request target must be a path")
    if len(lines) - 1 > _MAX_HEADERS:
        raise HeadError(400, f"more than {_MAX_HEADERS} headers")
    headers = Headers()
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon or _TOKEN.fullmatch(name) is None:
            raise HeadError(400, "malformed header line")
        value = value.strip(b" \t")
        if _VALUE.fullmatch(value) is None:
            raise HeadError(400, "a header value holds characters HTTP does not allow")
        headers.set_insecure(name.decode("ascii"), value.decode("ascii"))  # checked just above
    url = urlsplit(target)
    return RequestHead(method, target, headers, url.path, dict(parse_qsl(url.query)))
