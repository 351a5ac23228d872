"""The ledger's Lua scripts, called by SHA on a small pool of direct Redis connections.

``redis.Redis`` wraps every command in a pool checkout (with a readiness
poll of the socket), a retry policy and a response callback: about 100 µs
of CPU per call on a 2-core VM, more than the round trip itself. An
admission and a close are one script each, on the user supervisors'
threads, so this module keeps redis-py's connections, RESP encoder, parser
and errors, and leaves out the rest: a caller takes an idle connection (or
makes one), sends ``EVALSHA``, reads the reply and puts the connection
back. An idle connection with something to read (the server closed it, as
in a restart) is connected again first, as redis-py's pool does; one that
failed is closed; a server that lost its script cache gets ``EVAL`` once
(which caches the script again).

Threads: any; a connection is used by one thread at a time.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Mapping, Sequence
from typing import Any, Protocol, cast

import redis

__all__ = ["ScriptCaller"]


class _Connection(Protocol):
    """What is used of a redis-py ``Connection`` (typed here: redis-py's methods are not)."""

    def send_command(self, *args: Any) -> None: ...

    def read_response(self) -> Any: ...

    def can_read(self, timeout: float = 0) -> bool: ...

    def disconnect(self) -> None: ...


class ScriptCaller:
    """Runs named Lua scripts on ``client``'s server; errors are redis-py's (``RedisError``)."""

    def __init__(self, client: redis.Redis, sources: Mapping[str, str]) -> None:
        pool = client.connection_pool
        self._connection_class = pool.connection_class
        self._connection_kwargs = dict(pool.connection_kwargs)
        self._sources = dict(sources)
        self._shas = {
            name: hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()
            for name, source in sources.items()
        }
        self._idle: list[_Connection] = []
        self._lock = threading.Lock()

    def __call__(self, name: str, keys: Sequence[str], args: Sequence[Any] = ()) -> Any:
        """Run script ``name`` with ``keys`` and ``args``; its reply as redis-py parses it."""
        connection = self._checkout()
        try:
            reply = self._run(connection, name, keys, args)
        except redis.ResponseError:
            self._checkin(connection)  # an error reply: the connection is in step
            raise
        except BaseException:
            connection.disconnect()  # a timeout or a broken socket: never reuse it
            raise
        self._checkin(connection)
        return reply

    def close(self) -> None:
        """Close the idle connections (one in use is closed when it fails or comes back)."""
        with self._lock:
            idle, self._idle = self._idle, []
        for connection in idle:
            connection.disconnect()

    def _run(
        self, connection: _Connection, name: str, keys: Sequence[str], args: Sequence[Any]
    ) -> Any:
        try:
            connection.send_command("EVALSHA", self._shas[name], len(keys), *keys, *args)
            return connection.read_response()
        except redis.exceptions.NoScriptError:  # a restarted or flushed server
            connection.send_command("EVAL", self._sources[name], len(keys), *keys, *args)
            return connection.read_response()

    def _checkout(self) -> _Connection:
        with self._lock:
            connection = self._idle.pop() if self._idle else None
        if connection is None:
            return cast(_Connection, self._connection_class(**self._connection_kwargs))
        try:  # as redis-py's pool: an idle socket with something to read was closed (a restart)
            stale = connection.can_read()
        except (redis.ConnectionError, redis.TimeoutError, OSError):
            stale = True
        if stale:
            connection.disconnect()  # the next command connects again
        return connection

    def _checkin(self, connection: _Connection) -> None:
        with self._lock:
            self._idle.append(connection)
