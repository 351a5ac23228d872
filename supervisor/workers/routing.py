"""What the master does with a request head: refuse it, or hand it to a worker (pure).

:class:`HandoffPolicy` decides, in the order a single daemon's front
answers (:mod:`supervisor.front.server`): 429 with ``Retry-After`` (too
many handshakes from the address: one :class:`AddressLimiter` for the
whole daemon, so the limit stays exact whatever the number of workers),
404 (another path), a request that is no upgrade (handed to a worker in
turn, whose websockets refuses it with the precise reason), 403 (an Origin
not in ``[server] origins``), 401 (authentication, with the
:class:`Authenticator` the daemon was started with). Every other request
goes to its user's worker, :func:`owner_of`: a user lives on one worker,
so that worker's user supervisor stays the one owner of the user's quota.
The worker goes on as a single daemon does (thread id, then admission).

No I/O and no threads: the address limiter reads the injected clock.
"""

from __future__ import annotations

import email.utils
import hashlib
import http
import itertools
import math

import attrs
from websockets.datastructures import MultipleValuesError
from websockets.http11 import Request

from actors.clock import Clock
from supervisor.config.schema import Config
from supervisor.errors import AuthError
from supervisor.front.auth import Authenticator
from supervisor.front.limits import AddressLimiter
from supervisor.front.server import is_upgrade
from supervisor.workers.head import RequestHead

__all__ = ["HandOff", "HandoffPolicy", "Refusal", "owner_of"]


def owner_of(user_id: str, workers: int, key: bytes) -> int:
    """The worker (0 .. ``workers`` - 1) of ``user_id``: a keyed hash, stable for one daemon.

    Keyed (``key``, random per daemon) so that no one can pick user ids
    that all land on one worker.
    """
    data = user_id.encode("utf-8", "surrogateescape")
    digest = hashlib.blake2b(data, key=key, digest_size=8).digest()
    return int.from_bytes(digest, "big") % workers


@attrs.frozen
class HandOff:
    """Send the connection to ``worker``; ``user_id`` is "" for a request that is no upgrade."""

    worker: int
    user_id: str


@attrs.frozen
class Refusal:
    """Answer the request with ``status`` and ``reason`` (and ``Retry-After``), then close."""

    status: int
    reason: str
    retry_after: float | None = None

    def encode(self) -> bytes:
        """The HTTP answer, as websockets words its own refusals (``Connection: close``)."""
        body = (self.reason + "\n").encode()
        phrase = http.HTTPStatus(self.status).phrase
        lines = [
            f"HTTP/1.1 {self.status} {phrase}",
            f"Date: {email.utils.formatdate(usegmt=True)}",
            "Connection: close",
            "Content-Type: text/plain; charset=utf-8",
            f"Content-Length: {len(body)}",
        ]
        if self.retry_after is not None:
            lines.append(f"Retry-After: {max(1, math.ceil(self.retry_after))}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


class HandoffPolicy:
    """The master's decisions on request heads, for ``workers`` workers.

    Runs on the master's event loop only, so nothing here is locked.
    """

    def __init__(
        self,
        config: Config,
        authenticator: Authenticator,
        workers: int,
        key: bytes,
        clock: Clock | None = None,
    ) -> None:
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers!r}")
        limits = config.limits
        self.workers = workers
        self.path = config.server.path
        self.origins = config.server.allowed_origins
        self.auth = authenticator
        self.key = key
        self.rate = AddressLimiter(
            limits.handshakes_per_second_per_address,
            limits.handshake_burst_per_address,
            clock=clock,
        )
        self._turns = itertools.cycle(range(workers))

    def owner(self, user_id: str) -> int:
        """The worker of ``user_id``."""
        return owner_of(user_id, self.workers, self.key)

    def decide(self, head: RequestHead, address: str) -> HandOff | Refusal:
        """Where the connection whose request is ``head``, from ``address``, goes."""
        if not self.rate.allow(address):
            wait = self.rate.retry_after(address)
            return Refusal(429, "too many handshakes from this address", wait)
        if head.path != self.path:
            return Refusal(404, "not found")
        if not is_upgrade(Request(head.target, head.headers)):
            return HandOff(next(self._turns), "")  # its worker's websockets says what is wrong
        if self.origins is not None and not self._origin_allowed(head):
            return Refusal(403, "origin not allowed")
        try:
            user_id = self.auth.authenticate(head.headers, head.query)
        except AuthError as error:
            return Refusal(401, error.reason)
        return HandOff(self.owner(user_id), user_id)

    def _origin_allowed(self, head: RequestHead) -> bool:
        try:
            origin = head.headers.get("Origin")
        except MultipleValuesError:
            return False
        return origin is not None and self.origins is not None and origin in self.origins
