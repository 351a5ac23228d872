"""One context per connection, and the one place that builds an isolation key.

The seed's leak came from a manager created under one id and cleaned up under
another. Here a :class:`UserExecutionContext` is built once, at the WebSocket
entry point, and handed to every component; each of them reads
:attr:`UserExecutionContext.isolation_key` from that same object. Nothing else
in the code base joins a user id and a thread id.
"""

from __future__ import annotations

import functools
import itertools
import re
import secrets
import threading
import time
from typing import cast, overload

import attrs

from actors.errors import InvalidIdError

__all__ = [
    "MAX_ID_LENGTH",
    "UnifiedIdGenerator",
    "UserExecutionContext",
    "validate_id",
]

MAX_ID_LENGTH = 128
"""The longest id accepted, in characters."""

# ASCII only (no unicode confusables); never ":" (it separates the isolation key).
_THREAD_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_USER_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+|-]*")
_OPERATION_RE = re.compile(r"[a-z][a-z0-9_]{0,31}")


# the same patterns with the length bound: one match tells a valid id (the reason comes after)
_VALID_USER_ID = re.compile(rf"[A-Za-z0-9][A-Za-z0-9._@+|-]{{0,{MAX_ID_LENGTH - 1}}}")
_VALID_ID = re.compile(rf"[A-Za-z0-9][A-Za-z0-9._-]{{0,{MAX_ID_LENGTH - 1}}}")


def validate_id(field: str, value: object) -> str:
    """Return ``value`` if it is a valid id for ``field``; raise :class:`InvalidIdError`."""
    valid = _VALID_USER_ID if field == "user_id" else _VALID_ID
    if isinstance(value, str) and valid.fullmatch(value) is not None:
        return value
    if not isinstance(value, str):
        raise InvalidIdError(field, f"must be a string, got {type(value).__name__}")
    if not value:
        raise InvalidIdError(field, "must not be empty")
    if len(value) > MAX_ID_LENGTH:
        raise InvalidIdError(field, f"must be at most {MAX_ID_LENGTH} characters, got {len(value)}")
    pattern = _USER_ID_RE if field == "user_id" else _THREAD_ID_RE
    if pattern.fullmatch(value) is None:
        allowed = (
            "letters, digits and . _ - @ + |" if field == "user_id" else "letters, digits and . _ -"
        )
        raise InvalidIdError(
            field, f"may hold only ASCII {allowed}, starting with a letter or digit"
        )
    return value


def _id_validator(instance: object, attribute: attrs.Attribute[str], value: str) -> None:
    valid = _VALID_USER_ID if attribute.name == "user_id" else _VALID_ID
    if type(value) is not str or valid.fullmatch(value) is None:  # validate_id's first test
        validate_id(attribute.name, value)  # raises, with the reason


class UnifiedIdGenerator:
    """Makes the ids of a connection; unique across calls and threads."""

    _counter = itertools.count(1)  # next() on itertools.count is atomic under the GIL
    _random = threading.local()  # per thread: 8 hex digits at a time from one urandom read

    @classmethod
    def _unique(cls) -> str:
        return f"{next(cls._counter):x}{cls._random_hex()}"

    @classmethod
    def _random_hex(cls, chunk: int = 8, batch: int = 512) -> str:
        """8 random hex digits, as ``secrets.token_hex(4)``, from a buffered urandom read."""
        pool: list[str] | None = getattr(cls._random, "pool", None)
        if not pool:
            digits = secrets.token_hex(chunk * batch // 2)
            pool = cls._random.pool = [digits[i : i + chunk] for i in range(0, len(digits), chunk)]
        return pool.pop()

    @classmethod
    def generate_user_context_ids(cls, user_id: str, operation: str) -> tuple[str, str, str]:
        """Return ``(thread_id, run_id, request_id)``; ``run_id`` is contained in ``thread_id``."""
        validate_id("user_id", user_id)
        return cls._thread_ids(operation)

    @classmethod
    def _thread_ids(cls, operation: str) -> tuple[str, str, str]:
        if _OPERATION_RE.fullmatch(operation) is None:
            raise InvalidIdError("operation", "must be 1-32 lower-case letters, digits or _")
        run_id = f"run_{operation}_{cls._unique()}"
        return f"thread_{run_id}", run_id, f"req_{operation}_{cls._unique()}"

    @classmethod
    def generate_run_id(cls, operation: str) -> str:
        """A fresh run id, for a resumed thread."""
        return f"run_{operation}_{cls._unique()}"

    @classmethod
    def generate_request_id(cls, operation: str) -> str:
        """A fresh request id."""
        return f"req_{operation}_{cls._unique()}"

    @classmethod
    def generate_websocket_id(cls) -> str:
        """A fresh id for one WebSocket connection."""
        return f"ws_{cls._unique()}"


@attrs.frozen
class UserExecutionContext:
    """Who a connection belongs to and under which ids; immutable.

    Built once per connection by :meth:`from_websocket_request`. Every id is
    validated on construction, so a context can never hold a forged key.
    """

    user_id: str = attrs.field(validator=_id_validator)
    thread_id: str = attrs.field(validator=_id_validator)
    run_id: str = attrs.field(validator=_id_validator)
    request_id: str = attrs.field(validator=_id_validator)
    websocket_id: str = attrs.field(validator=_id_validator)
    created_at: float = attrs.field(factory=time.time)

    @functools.cached_property
    def isolation_key(self) -> str:
        """``user_id:thread_id``: the one key every actor, cleanup, metric and dump uses.

        Made at its first use and kept (a connection reads it about seven times).
        """
        return f"{self.user_id}:{self.thread_id}"

    @overload
    @classmethod
    def from_websocket_request(
        cls,
        user_id: str,
        thread_id: str | None = None,
        run_id: str | None = None,
        request_id: str | None = None,
        *,
        websocket_id: str | None = None,
        operation: str = "websocket",
        created_at: float | None = None,
    ) -> UserExecutionContext: ...

    @overload
    @classmethod
    def from_websocket_request(
        cls,
        *ids: str | None,
        user_id: str,
        websocket_id: str | None = None,
        operation: str = "websocket",
        created_at: float | None = None,
    ) -> UserExecutionContext: ...

    @classmethod
    def from_websocket_request(
        cls,
        *ids: str | None,
        user_id: str | None = None,
        thread_id: str | None = None,
        run_id: str | None = None,
        request_id: str | None = None,
        websocket_id: str | None = None,
        operation: str = "websocket",
        created_at: float | None = None,
    ) -> UserExecutionContext:
        """Build the context of a new connection.

        Without ``thread_id`` a new thread is started (ids from
        :class:`UnifiedIdGenerator`); with one, that thread is resumed and
        the missing run and request ids are generated.

        The ids come in the order ``user_id, thread_id, run_id, request_id``,
        positionally or by name. ``user_id`` given by name with the other
        three positional is the seed's own call, and builds the same
        context as the positional form::

            from_websocket_request(
                user_id="u", *UnifiedIdGenerator.generate_user_context_ids("u", "op")
            )
        """
        named = {"thread_id": thread_id, "run_id": run_id, "request_id": request_id}
        order = ("thread_id", "run_id", "request_id")
        if user_id is None:
            if not ids:
                raise TypeError("from_websocket_request() needs a user_id")
            first, *rest = ids
            user_id = cast(str, first)  # validated on construction, with every id
        else:
            rest = list(ids)
        if len(rest) > len(order):
            raise TypeError(
                f"from_websocket_request() takes at most 4 ids, got {len(rest) + 1}"
                " (user_id, thread_id, run_id, request_id)"
            )
        for name, value in zip(order, rest, strict=False):
            if named[name] is not None:
                raise TypeError(f"from_websocket_request() got two values for {name}")
            named[name] = value
        return cls._build(
            user_id,
            named["thread_id"],
            named["run_id"],
            named["request_id"],
            websocket_id=websocket_id,
            operation=operation,
            created_at=created_at,
        )

    @classmethod
    def _build(
        cls,
        user_id: str,
        thread_id: str | None,
        run_id: str | None,
        request_id: str | None,
        *,
        websocket_id: str | None,
        operation: str,
        created_at: float | None,
    ) -> UserExecutionContext:
        if thread_id is None:
            # the user id is validated on construction, with every id
            thread_id, new_run, new_request = UnifiedIdGenerator._thread_ids(operation)
            run_id = run_id or new_run
            request_id = request_id or new_request
        return cls(
            user_id=user_id,
            thread_id=thread_id,
            run_id=run_id or UnifiedIdGenerator.generate_run_id(operation),
            request_id=request_id or UnifiedIdGenerator.generate_request_id(operation),
            websocket_id=websocket_id or UnifiedIdGenerator.generate_websocket_id(),
            created_at=time.time() if created_at is None else created_at,
        )
