"""The ledger's Lua scripts, sent in order and pipelined on one Redis connection by one thread.

``redis.Redis`` wraps every command in a pool checkout (with a readiness
poll of the socket), a retry policy and a response callback: about 100 µs
of CPU per call on a 2-core VM, more than the round trip itself, and the
calling thread sleeps through the round trip. A user supervisor must not:
its worker serves many users. So the supervisors hand their script calls to
a :class:`ScriptLink` and go on; the link's thread sends whatever has
queued up as one pipeline (``EVALSHA`` each) on one redis-py
``Connection``, reads the replies in order and hands each to its callback.
Under load one write and one read carry many calls.

One connection and one thread keep the calls in the order they were
submitted: a release submitted before an admission is executed before it.
redis-py's connection, RESP encoder, parser and errors are kept. An idle
socket with something to read (the server closed it, as in a restart) is
connected again before a batch, as redis-py's pool does; a connection that
failed is dropped and made again for the next batch. On a new connection
every script is loaded (``SCRIPT LOAD``) in the same write as the first
batch, so that no call of it meets ``NOSCRIPT``: such a call is sent again
with ``EVAL`` (which caches the script again), in order with the others
that failed so, but after the calls that followed it. That happens only if
the server's script cache is flushed under a live connection.

With ``eager`` (the push link's: the ledger's keeps to its thread, whose
batches cost fewer wake-ups under churn), a call submitted while the link
is idle (nothing queued, no batch in flight, the connection up, the
scripts loaded, and a small command) is
written at once from the submitting thread, under the link's lock: the
request goes out without waiting for the link's thread to wake (a thread
hop that costs more than a loopback round trip on a loaded host); the link's
thread still reads its reply, in order. Not on TLS connections (an SSL
socket is left to one thread), nor for a command larger than
:data:`EAGER_MAX` (a write that could fill the socket's buffer and block
the caller).

Threads: :meth:`ScriptLink.submit`, :meth:`~ScriptLink.call`,
:meth:`~ScriptLink.flush` and :meth:`~ScriptLink.close` from any thread;
callbacks run on the link's own thread (``redis-link``), one at a time, and
must not block.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol, cast

import redis

__all__ = ["EAGER_MAX", "Reply", "ScriptLink"]

log = logging.getLogger(__name__)

Reply = Any
"""A script's reply as redis-py parses it, or the ``redis.RedisError`` that it raised."""


class _Connection(Protocol):
    """What is used of a redis-py ``Connection`` (typed here: redis-py's methods are not)."""

    def pack_commands(self, commands: Sequence[Sequence[Any]]) -> list[bytes]: ...

    def send_packed_command(self, command: list[bytes], check_health: bool = True) -> None: ...

    def read_response(self) -> Any: ...

    def can_read(self, timeout: float = 0) -> bool: ...

    def connect(self) -> None: ...

    def disconnect(self) -> None: ...


_Call = tuple[str, Sequence[str], Sequence[Any], Callable[[Reply], None]]
_BROKEN = (redis.ConnectionError, redis.TimeoutError, OSError)

EAGER_MAX = 16 * 1024
"""The largest command (bytes) written from the submitting thread: well under a socket's buffer."""


class ScriptLink:
    """Runs named Lua scripts on ``client``'s server, in submission order, from one thread."""

    def __init__(
        self, client: redis.Redis, sources: Mapping[str, str], *, eager: bool = False
    ) -> None:
        pool = client.connection_pool
        self._connection_class = pool.connection_class
        self._connection_kwargs = dict(pool.connection_kwargs)
        self._timeout = float(self._connection_kwargs.get("socket_timeout") or 1.0)
        self._sources = dict(sources)
        self._shas = {
            name: hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()
            for name, source in sources.items()
        }
        self._connection: _Connection | None = None
        self._loaded = False  # the scripts loaded on this connection's server
        self._cond = threading.Condition()
        self._queue: list[_Call] = []
        self._written: list[_Call] = []  # written by their submitters; the replies not yet read
        self._busy = False  # the link's thread has a batch in hand (it owns the connection)
        self._eager = eager and not issubclass(self._connection_class, redis.SSLConnection)
        self._submitted = self._answered = 0
        self._closing = False
        self._thread: threading.Thread | None = None

    def submit(
        self, name: str, keys: Sequence[str], args: Sequence[Any], on_reply: Callable[[Reply], None]
    ) -> None:
        """Queue one call; ``on_reply`` gets its reply on the link's thread (never blocks)."""
        call = (name, keys, args, on_reply)
        with self._cond:
            if self._closing:
                closed = True
            else:
                closed = False
                self._submitted += 1
                if self._write_now(call):
                    self._written.append(call)
                    if len(self._written) == 1:
                        self._cond.notify_all()
                else:
                    self._queue.append(call)
                    if self._thread is None:
                        self._thread = threading.Thread(
                            target=self._run, name="redis-link", daemon=True
                        )
                        self._thread.start()
                    elif len(self._queue) == 1:
                        self._cond.notify_all()
        if closed:
            on_reply(redis.ConnectionError("the redis link is closed"))

    def call(self, name: str, keys: Sequence[str], args: Sequence[Any] = ()) -> Any:
        """Run one call after every call queued before it and wait for its reply.

        Raises the ``redis.RedisError`` of the call, or ``redis.TimeoutError``
        when no reply came within twice the socket timeout.
        """
        done = threading.Event()
        box: list[Reply] = []

        def answer(reply: Reply) -> None:
            box.append(reply)
            done.set()

        self.submit(name, keys, args, answer)
        if not done.wait(self._timeout * 2):
            raise redis.TimeoutError(f"no reply to {name} in {self._timeout * 2:g} s")
        if isinstance(box[0], redis.RedisError):
            raise box[0]
        return box[0]

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every call submitted so far has been answered; False on timeout."""
        with self._cond:
            target = self._submitted
            return self._cond.wait_for(lambda: self._answered >= target, timeout)

    def close(self, timeout: float = 5.0) -> None:
        """Answer what is queued, then end the thread and close the connection."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(timeout)
        if self._connection is not None:
            self._connection.disconnect()
            self._connection = None

    # --- the link's thread ---------------------------------------------------------------

    def _write_now(self, call: _Call) -> bool:
        """Under the lock: write ``call`` on the idle link's connection now; False to queue it.

        Only with the link's thread started and idle, nothing queued, the
        connection up with the scripts loaded and no reply waiting to be
        read from an idle socket (the server closed it: the link's thread
        connects again). A write that fails drops the connection and queues
        the call, to be sent on a new one.
        """
        connection = self._connection
        if not (
            self._eager
            and self._thread is not None
            and not self._busy
            and not self._queue
            and self._loaded
            and connection is not None
        ):
            return False
        name, keys, args, _ = call
        try:
            if not self._written and connection.can_read():
                return False  # nothing was asked: the server closed an idle connection
            packed = connection.pack_commands(
                [("EVALSHA", self._shas[name], len(keys), *keys, *args)]
            )
            if sum(len(part) for part in packed) > EAGER_MAX:
                return False
            connection.send_packed_command(packed, check_health=False)
        except _BROKEN:  # the calls written before get an error; the queue, a new connection
            self._drop()
            return False
        return True

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._queue or self._written or self._closing)
                written, self._written = self._written, []
                batch, self._queue = self._queue, []
                self._busy = True
            if not batch and not written:
                return  # closing, and nothing is left to send
            answered = [*written, *batch]
            replies = [*self._receive(written), *self._send(batch)]
            for (_, _, _, on_reply), reply in zip(answered, replies, strict=True):
                try:
                    on_reply(reply)
                except Exception:
                    log.exception("a redis reply callback failed")
            with self._cond:
                self._busy = False
                self._answered += len(answered)
                self._cond.notify_all()

    def _receive(self, written: Sequence[_Call]) -> list[Reply]:
        """The replies of the calls their submitters wrote (``NOSCRIPT``: sent again)."""
        if not written:
            return []
        connection = self._connection
        replies: list[Reply] = []
        try:
            if connection is None:
                raise redis.ConnectionError("the redis link's connection was dropped")
            while len(replies) < len(written):
                try:
                    replies.append(connection.read_response())
                except redis.ResponseError as exc:  # an error reply: the connection is in step
                    replies.append(exc)
        except _BROKEN as exc:
            self._drop()
            error = exc if isinstance(exc, redis.RedisError) else redis.ConnectionError(str(exc))
            replies += [error] * (len(written) - len(replies))
        return self._again(written, replies)

    def _send(self, batch: Sequence[_Call]) -> list[Reply]:
        if not batch:
            return []
        replies = self._pipeline(
            [
                ("EVALSHA", self._shas[name], len(keys), *keys, *args)
                for name, keys, args, _ in batch
            ]
        )
        return self._again(batch, replies)

    def _again(self, batch: Sequence[_Call], replies: list[Reply]) -> list[Reply]:
        """``replies`` with each ``NOSCRIPT`` one replaced by its call's, sent again by ``EVAL``."""
        missing = [
            i
            for i, reply in enumerate(replies)
            if isinstance(reply, redis.exceptions.NoScriptError)
        ]
        if missing:  # a restarted or flushed server: EVAL caches the scripts again
            again = [batch[i] for i in missing]
            evals = [("EVAL", self._sources[n], len(k), *k, *a) for n, k, a, _ in again]
            for i, reply in zip(missing, self._pipeline(evals), strict=True):
                replies[i] = reply
        return replies

    def _pipeline(self, commands: Sequence[Sequence[Any]]) -> list[Reply]:
        """Send ``commands`` at once and read their replies, in order.

        On a connection new to its server, every script is loaded first, in
        the same write: a call whose script the server lacks would be
        answered ``NOSCRIPT`` and sent again after the calls that followed
        it, out of order (a renewal after the admission it must come before).
        """
        replies: list[Reply] = []
        loads: list[tuple[str, str, str]] = []
        try:
            connection = self._connect()
            if not self._loaded:
                loads = [("SCRIPT", "LOAD", source) for source in self._sources.values()]
            sent = [*loads, *commands]
            connection.send_packed_command(connection.pack_commands(sent), check_health=False)
            while len(replies) < len(sent):
                try:
                    replies.append(connection.read_response())
                except redis.ResponseError as exc:  # an error reply: the connection is in step
                    replies.append(exc)
            self._loaded = not any(isinstance(r, redis.RedisError) for r in replies[: len(loads)])
        except _BROKEN as exc:
            self._drop()
            error = exc if isinstance(exc, redis.RedisError) else redis.ConnectionError(str(exc))
            replies += [error] * (len(loads) + len(commands) - len(replies))
        return replies[len(loads) :]

    def _connect(self) -> _Connection:
        """The link's connection, connected (its class's ``connect()``, never implicitly).

        Sending on a connection that is not connected would connect it
        implicitly, past a Sentinel-managed connection's ``connect()``, the
        override that asks the sentinels where the master is: to the
        default address, or after a failover to the demoted master's.
        """
        connection = self._connection
        if connection is None:
            connection = cast(_Connection, self._connection_class(**self._connection_kwargs))
            self._connection = connection
            self._loaded = False
        else:
            try:  # as redis-py's pool: an idle socket with something to read was closed
                stale = connection.can_read()
            except _BROKEN:
                stale = True
            if stale:
                connection.disconnect()
                self._loaded = False
        connection.connect()  # a no-op when connected
        return connection

    def _drop(self) -> None:
        if self._connection is not None:
            self._connection.disconnect()  # a timeout or a broken socket: never reuse it
            self._connection = None
        self._loaded = False
