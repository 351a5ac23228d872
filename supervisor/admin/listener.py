"""The admin listener: a small HTTP/1.1 server on asyncio streams.

Everything in this module runs on the event loop; what it serves comes from
an :class:`~supervisor.admin.backend.AdminBackend`.

Routes: ``GET /metrics`` (Prometheus text), ``GET /healthz``, ``GET /readyz``,
``GET /debug/state``, ``GET /debug/cluster`` (every user's slots on every
node, with the Redis backend), ``POST /v1/push`` (JSON; the answer says what
the frame reached on every node: :class:`~supervisor.cluster.push_tally.PushAnswer`)
and the live page of the tree, ``GET /ui`` with its files
(:mod:`supervisor.admin.page`). One request per connection
(``Connection: close``); request line and headers at most 8 KiB (431), body at
most 64 KiB (413), the whole request within the read timeout (408, then cut).
Every error is ``{"error": "..."}``; no traceback ever reaches the client.
A browser's request from another site, or to a name pointed at loopback
(DNS rebinding), is refused (403: :mod:`supervisor.admin.origin`).
With a token configured, every route needs ``Authorization: Bearer <token>``,
but the page's static files, which hold no data (its script sends the token
itself when it reads the state).
Under ``serve --workers N`` each worker's listener serves a Unix socket
(``path``) that only the master reads, and the master's serves the port.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hmac
import http
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import attrs

from actors.errors import InvalidIdError, WsSupervisorError
from supervisor.admin.backend import AdminBackend
from supervisor.admin.origin import is_loopback_host, refusal
from supervisor.admin.page import PAGE_HEADERS, load_page
from supervisor.errors import BackendUnavailable
from supervisor.front.protocol import MAX_DEPTH, nesting_depth

__all__ = ["AdminServer"]

log = logging.getLogger(__name__)

MAX_HEAD = 8 * 1024
MAX_BODY = 64 * 1024
_JSON = "application/json"
_METRICS = "text/plain; version=0.0.4; charset=utf-8"
_LINGER_SECONDS = 1.0
_LINGER_BYTES = 1024 * 1024
_Headers = tuple[tuple[str, str], ...]
_SINGLE = ("content-length", "authorization", "transfer-encoding", "host", "origin")
"""The headers a request may send once (400 if twice)."""


class _HttpError(WsSupervisorError):
    """An error answer: status, message and extra headers."""

    def __init__(self, status: int, message: str, headers: _Headers = ()) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers

    def response(self) -> _Response:
        return _error(self.status, self.message, self.headers)


@attrs.frozen
class _Response:
    status: int
    body: bytes
    content_type: str = _JSON
    headers: _Headers = ()

    def encode(self) -> bytes:
        lines = [
            f"HTTP/1.1 {self.status} {http.HTTPStatus(self.status).phrase}",
            f"Content-Type: {self.content_type}",
            f"Content-Length: {len(self.body)}",
            "Connection: close",
            "Cache-Control: no-store",
            *(f"{name}: {value}" for name, value in self.headers),
        ]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + self.body


def _json(status: int, payload: Any, headers: _Headers = ()) -> _Response:
    return _Response(status, json.dumps(payload).encode(), _JSON, headers)


def _error(status: int, message: str, headers: _Headers = ()) -> _Response:
    return _json(status, {"error": message}, headers)


@attrs.frozen
class _Request:
    method: str
    path: str
    headers: dict[str, str]


def _parse_head(head: bytes) -> _Request:
    """Parse the request line and headers (without the final blank line)."""
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[0].isalpha() or not parts[0].isupper():
        raise _HttpError(400, f"malformed request line: {lines[0][:100]!r}")
    method, target, version = parts
    if version not in ("HTTP/1.1", "HTTP/1.0"):
        raise _HttpError(505, f"unsupported HTTP version: {version[:20]!r}")
    if not target.startswith("/"):
        raise _HttpError(400, f"request target must be a path: {target[:100]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip() or line[0] in " \t":
            raise _HttpError(400, f"malformed header line: {line[:100]!r}")
        key = name.lower()
        if key in headers and key in _SINGLE:
            raise _HttpError(400, f"duplicate {name} header")
        headers[key] = value.strip()
    return _Request(method, target.split("?", 1)[0], headers)


def _content_length(request: _Request) -> int:
    if "transfer-encoding" in request.headers:
        raise _HttpError(411, "Transfer-Encoding is not supported: send Content-Length")
    raw = request.headers.get("content-length", "0")
    if not (raw.isascii() and raw.isdigit()):
        raise _HttpError(400, f"bad Content-Length: {raw[:40]!r}")
    length = int(raw)
    if length > MAX_BODY:
        raise _HttpError(413, f"body of {length} bytes exceeds the limit of {MAX_BODY}")
    return length


def _parse_push(body: bytes) -> tuple[str, str | None, Any]:
    def refuse(constant: str) -> None:
        raise ValueError(f"{constant} is not valid JSON")

    try:
        data = json.loads(body.decode("utf-8"), parse_constant=refuse)
    except UnicodeDecodeError:
        raise _HttpError(400, "body is not UTF-8") from None
    except ValueError as error:
        raise _HttpError(400, f"body is not valid JSON: {error}") from None
    except RecursionError:  # nested past the interpreter's limit: too deep, never a 500
        raise _HttpError(400, f"message nested deeper than {MAX_DEPTH} levels") from None
    if not isinstance(data, dict):
        raise _HttpError(400, "body must be a JSON object")
    unknown = sorted(set(data) - {"user_id", "thread_id", "message"})
    if unknown:
        raise _HttpError(400, f"unknown field: {unknown[0]}")
    if "user_id" not in data:
        raise _HttpError(400, "missing field: user_id")
    if not isinstance(data["user_id"], str):
        raise _HttpError(400, "user_id must be a string")
    thread_id = data.get("thread_id")
    if thread_id is not None and not isinstance(thread_id, str):
        raise _HttpError(400, "thread_id must be a string")
    if "message" not in data:
        raise _HttpError(400, "missing field: message")
    if nesting_depth(data["message"]) > MAX_DEPTH:  # no client may send it; nor may a push
        raise _HttpError(400, f"message nested deeper than {MAX_DEPTH} levels")
    return data["user_id"], thread_id, data["message"]


_Handler = Callable[[bytes], Awaitable[_Response]]


class AdminServer:
    """The admin HTTP listener; :meth:`start` and :meth:`close` run on the event loop."""

    def __init__(
        self,
        host: str,
        port: int,
        backend: AdminBackend,
        token: str | None,
        *,
        read_timeout: float = 10.0,
        path: str | None = None,
    ) -> None:
        self.host = host
        self._port = port
        self.path = path
        self.backend = backend
        self._token = token.encode("utf-8") if token else None
        self._on_loopback = path is None and is_loopback_host(host)
        self.read_timeout = read_timeout
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._closing = False
        self._routes: dict[str, tuple[str, _Handler]] = {
            "/metrics": ("GET", self._metrics),
            "/healthz": ("GET", self._healthz),
            "/readyz": ("GET", self._readyz),
            "/debug/state": ("GET", self._state),
            "/debug/cluster": ("GET", self._cluster),
            "/v1/push": ("POST", self._push),
        }
        self._page = load_page()
        for route in self._page:
            self._routes[route] = ("GET", functools.partial(self._page_file, route))

    async def start(self) -> None:
        """Bind and listen (port 0: an ephemeral port, see :attr:`port`; or the Unix ``path``)."""
        if self.path is not None:
            self._server = await asyncio.start_unix_server(self._accept, self.path, limit=MAX_HEAD)
            return
        self._server = await asyncio.start_server(
            self._accept, self.host, self._port, limit=MAX_HEAD
        )

    @property
    def port(self) -> int:
        """The bound port (the configured one before :meth:`start`; 0 on a Unix socket)."""
        if self.path is not None:
            return 0
        if self._server is None or not self._server.sockets:
            return self._port
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def close(self) -> None:
        """Stop listening, cut every open client connection and wait for their tasks."""
        self._closing = True
        server, self._server = self._server, None
        if server is not None:
            server.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if server is not None:
            await server.wait_closed()

    # --- one connection ---------------------------------------------------------------------

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._closing:  # accepted as the listener closed
            writer.transport.abort()
            return
        task = asyncio.get_running_loop().create_task(self._serve(reader, writer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            response, linger = await self._exchange(reader, writer)
            if response is not None:
                writer.write(response.encode())
                async with asyncio.timeout(self.read_timeout):
                    await writer.drain()
                    if linger:  # let the client read the answer before we drop its body
                        writer.write_eof()
                        await _discard(reader)
                    writer.close()
                    await writer.wait_closed()
        except asyncio.CancelledError:
            raise
        except (OSError, TimeoutError):  # the client went away or stopped reading
            pass
        except Exception:
            log.exception("admin connection failed")
        finally:
            writer.transport.abort()

    async def _exchange(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> tuple[_Response | None, bool]:
        """Read one request and answer it: ``(response or None, linger)``."""
        deadline = asyncio.get_running_loop().time() + self.read_timeout
        try:
            async with asyncio.timeout_at(deadline):
                head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.LimitOverrunError:
            return _error(431, f"request line and headers exceed {MAX_HEAD} bytes"), True
        except asyncio.IncompleteReadError as error:
            if not error.partial.strip():
                return None, False  # connected and left without a word
            return _error(400, "incomplete request: the client closed early"), False
        except TimeoutError:
            return self._timed_out(), False
        try:
            request = _parse_head(head[:-4])
            self._check_site(request)
            self._authorize(request)
            handler = self._route(request)
            length = _content_length(request)
            if length and request.headers.get("expect", "").lower() == "100-continue":
                writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")  # curl waits for it
            async with asyncio.timeout_at(deadline):
                body = await reader.readexactly(length)
        except _HttpError as error:
            return error.response(), True
        except asyncio.IncompleteReadError as error:
            return _error(400, f"body ended after {len(error.partial)} of {length} bytes"), False
        except TimeoutError:
            return self._timed_out(), False
        return await self._call(request, handler, body), False

    def _timed_out(self) -> _Response:
        return _error(408, f"request not received within {self.read_timeout:g}s")

    def _check_site(self, request: _Request) -> None:
        """Refuse (403) a rebound name or another site's page (:mod:`~supervisor.admin.origin`)."""
        headers = request.headers
        why = refusal(headers.get("host"), headers.get("origin"), on_loopback=self._on_loopback)
        if why is not None:
            raise _HttpError(403, why)

    def _authorize(self, request: _Request) -> None:
        if self._token is None or (request.method == "GET" and request.path in self._page):
            return  # the page's files hold no data; the routes its script reads need the token
        challenge = (("WWW-Authenticate", 'Bearer realm="ws-supervisor"'),)
        header = request.headers.get("authorization")
        if header is None:
            raise _HttpError(401, "missing bearer token", challenge)
        scheme, _, presented = header.partition(" ")
        if scheme.lower() != "bearer" or not presented.strip():
            raise _HttpError(401, "Authorization must be 'Bearer <token>'", challenge)
        if not hmac.compare_digest(presented.strip().encode("latin-1"), self._token):
            raise _HttpError(401, "wrong bearer token", challenge)

    def _route(self, request: _Request) -> _Handler:
        route = self._routes.get(request.path)
        if route is None:
            raise _HttpError(404, f"no such path: {request.path[:200]}")
        method, handler = route
        if request.method != method:
            message = f"method {request.method} not allowed on {request.path}; use {method}"
            raise _HttpError(405, message, (("Allow", method),))
        return handler

    async def _call(self, request: _Request, handler: _Handler, body: bytes) -> _Response:
        try:
            return await handler(body)
        except _HttpError as error:
            return error.response()
        except BackendUnavailable as error:
            return _error(503, str(error))
        except Exception:
            log.exception("admin %s %s failed", request.method, request.path)
            return _error(500, "internal error")

    # --- routes -------------------------------------------------------------------------------

    async def _metrics(self, _: bytes) -> _Response:
        return _Response(200, await self.backend.metrics_text(), _METRICS)

    async def _healthz(self, _: bytes) -> _Response:
        alive, details = await self.backend.health()
        return _json(200 if alive else 503, details)

    async def _readyz(self, _: bytes) -> _Response:
        ready, reasons = await self.backend.readiness()
        if ready:
            return _json(200, {"ready": True})
        return _json(503, {"ready": False, "reasons": reasons})

    async def _state(self, _: bytes) -> _Response:
        return _json(200, await self.backend.state())

    async def _cluster(self, _: bytes) -> _Response:
        return _json(200, await self.backend.cluster())

    async def _page_file(self, path: str, _: bytes) -> _Response:
        asset = self._page[path]
        return _Response(200, asset.body, asset.content_type, PAGE_HEADERS)

    async def _push(self, body: bytes) -> _Response:
        user_id, thread_id, message = _parse_push(body)
        try:
            answer = await self.backend.push(user_id, thread_id, message)
        except InvalidIdError as error:
            raise _HttpError(400, str(error)) from None
        return _json(200, answer.as_json())


async def _discard(reader: asyncio.StreamReader) -> None:
    """Read and drop what the client still sends, briefly, until it closes."""
    with contextlib.suppress(TimeoutError, OSError):
        async with asyncio.timeout(_LINGER_SECONDS):
            total = 0
            while total < _LINGER_BYTES:
                chunk = await reader.read(64 * 1024)
                if not chunk:
                    return
                total += len(chunk)
