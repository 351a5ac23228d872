"""Limits that hold under abuse: token buckets per address and per connection.

Pure decisions, no threads and no I/O: every method takes the time (or reads
the injected :class:`~actors.clock.Clock`) and answers at once. Used on
the event loop only, so nothing here is locked.

- :class:`TokenBucket`: ``rate`` tokens a second, at most ``burst`` saved up;
- :class:`AddressLimiter`: one bucket per client address (handshakes), with
  bounded memory: past ``max_addresses`` the least recently seen address is
  forgotten (it starts again with a full bucket);
- :class:`InboundRateLimit`: one connection's inbound messages a second;
- :class:`ConcurrencyGate`: how many handshakes may be in progress at once.
"""

from __future__ import annotations

import collections
import math

from actors.clock import Clock, SystemClock

__all__ = ["AddressLimiter", "ConcurrencyGate", "InboundRateLimit", "TokenBucket"]


_EPSILON = 1e-9


def _check_rate(rate: float, burst: int) -> None:
    if not (rate > 0 and math.isfinite(rate)):
        raise ValueError(f"rate must be a finite number > 0, got {rate!r}")
    if burst < 1:
        raise ValueError(f"burst must be >= 1, got {burst!r}")


class TokenBucket:
    """``rate`` tokens a second, at most ``burst`` of them; it starts full.

    Each allowed event costs one token. Time that goes backwards is treated
    as no time at all.
    """

    __slots__ = ("_last", "_tokens", "burst", "rate")

    def __init__(self, rate: float, burst: int) -> None:
        _check_rate(rate, burst)
        self.rate = rate
        self.burst = burst
        self._tokens = float(burst)
        self._last: float | None = None

    def _refill(self, now: float) -> None:
        if self._last is not None and now > self._last:
            self._tokens = min(float(self.burst), self._tokens + (now - self._last) * self.rate)
        if self._last is None or now > self._last:
            self._last = now

    def allow(self, now: float) -> bool:
        """Take one token at ``now``; False (and nothing taken) if none is left."""
        self._refill(now)
        if self._tokens >= 1.0 - _EPSILON:  # 50 * 0.02 may come out a hair under 1
            self._tokens = max(0.0, self._tokens - 1.0)
            return True
        return False

    def retry_after(self, now: float) -> float:
        """Seconds from ``now`` until one token is available (0 if one is)."""
        self._refill(now)
        return max(0.0, (1.0 - self._tokens) / self.rate)

    def tokens(self, now: float) -> float:
        """The tokens available at ``now``."""
        self._refill(now)
        return self._tokens


class AddressLimiter:
    """One :class:`TokenBucket` per client address, at most ``max_addresses`` of them.

    Memory is bounded: when a new address would exceed ``max_addresses``, the
    least recently used address is forgotten.
    """

    def __init__(
        self,
        rate: float,
        burst: int,
        max_addresses: int = 10000,
        clock: Clock | None = None,
    ) -> None:
        _check_rate(rate, burst)
        if max_addresses < 1:
            raise ValueError(f"max_addresses must be >= 1, got {max_addresses!r}")
        self.rate = rate
        self.burst = burst
        self.max_addresses = max_addresses
        self.clock: Clock = clock if clock is not None else SystemClock()
        self._buckets: collections.OrderedDict[str, TokenBucket] = collections.OrderedDict()

    def _bucket(self, address: str) -> TokenBucket:
        bucket = self._buckets.get(address)
        if bucket is None:
            bucket = self._buckets[address] = TokenBucket(self.rate, self.burst)
            while len(self._buckets) > self.max_addresses:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(address)
        return bucket

    def allow(self, address: str, now: float | None = None) -> bool:
        """One handshake from ``address`` at ``now`` (default: the clock's time)."""
        at = self.clock.monotonic() if now is None else now
        return self._bucket(address).allow(at)

    def retry_after(self, address: str, now: float | None = None) -> float:
        """Seconds until ``address`` may try again (0 if it may now)."""
        at = self.clock.monotonic() if now is None else now
        return self._bucket(address).retry_after(at)

    def __len__(self) -> int:
        return len(self._buckets)

    def __contains__(self, address: object) -> bool:
        return address in self._buckets


class InboundRateLimit:
    """One connection's inbound messages: ``rate`` a second with bursts of ``burst``."""

    def __init__(self, rate: float, burst: int, clock: Clock | None = None) -> None:
        self.clock: Clock = clock if clock is not None else SystemClock()
        self._bucket = TokenBucket(rate, burst)

    def allow(self, now: float | None = None) -> bool:
        """Count one inbound message; False when the connection is over its rate."""
        return self._bucket.allow(self.clock.monotonic() if now is None else now)


class ConcurrencyGate:
    """At most ``limit`` holders at once (handshakes in progress)."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"limit must be >= 1, got {limit!r}")
        self.limit = limit
        self.active = 0

    def try_enter(self) -> bool:
        """Take a place; False (nothing taken) when ``limit`` are already in."""
        if self.active >= self.limit:
            return False
        self.active += 1
        return True

    def leave(self) -> None:
        """Give back a place taken by :meth:`try_enter`."""
        if self.active > 0:
            self.active -= 1
