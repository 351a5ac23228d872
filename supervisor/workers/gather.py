"""The master's admin backend: every route answered from the workers' own listeners.

Under ``serve --workers N`` the one admin listener of the daemon is the
master's (:class:`supervisor.admin.listener.AdminServer`, with its token,
limits and errors); its backend, :class:`WorkersBackend`, asks each worker's
admin listener on the worker's Unix socket (concurrently, each within
``timeout``) and puts the answers together (:mod:`supervisor.workers.aggregate`):

- ``/metrics``: every worker's, summed, then the master's own families;
  a worker that does not answer in time counts with what it last said;
- ``/healthz``: alive while the master runs and one worker or more is;
- ``/readyz``: ready when not draining and every worker serves and is ready;
- ``/debug/state``: every worker's users and figures;
- ``POST /v1/push``: sent to the user's worker only;
- ``/debug/cluster``: any worker's (they read the same Redis).

Every method runs on the master's event loop.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from prometheus_client.core import Metric

from actors.context import validate_id
from supervisor.cluster.push_tally import PushAnswer
from supervisor.errors import BackendUnavailable
from supervisor.workers.aggregate import (
    Exposition,
    Metrics,
    SeatAnswer,
    merge_readiness,
    merge_states,
    parse_exposition,
)

__all__ = ["STATE_TIMEOUT", "SeatView", "WorkersBackend", "ask_worker"]

STATE_TIMEOUT = 10.0
"""Seconds the master waits for a worker's ``/debug/state`` (its tree answers within 2 s)."""

_LARGEST_ANSWER = 64 << 20  # a state dump of ~12,000 users is a few MiB


class SeatView(Protocol):
    """What the backend reads of one worker's seat in the master."""

    @property
    def index(self) -> int: ...

    @property
    def pid(self) -> int | None: ...

    @property
    def node_id(self) -> str: ...

    @property
    def restarts(self) -> int: ...

    @property
    def serving(self) -> bool: ...

    @property
    def admin_path(self) -> str: ...


async def ask_worker(
    path: str, method: str, route: str, body: bytes = b"", timeout: float = 2.0
) -> tuple[int, bytes]:
    """One HTTP/1.1 request to the admin listener on the Unix socket ``path``: (status, body).

    Raises OSError (no listener), TimeoutError or ValueError (an answer
    that is no HTTP).
    """
    async with asyncio.timeout(timeout):
        reader, writer = await asyncio.open_unix_connection(path)
        try:
            head = f"{method} {route} HTTP/1.1\r\nHost: worker\r\nConnection: close\r\n"
            if body:
                head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            writer.write(head.encode() + b"\r\n" + body)
            answer = await reader.read(_LARGEST_ANSWER)
            while chunk := await reader.read(_LARGEST_ANSWER):
                answer += chunk
        finally:
            writer.close()
    status_line, _, rest = answer.partition(b"\r\n")
    parts = status_line.split(b" ", 2)
    if len(parts) < 2 or not parts[1].isdigit():
        raise ValueError(f"not an HTTP answer: {status_line[:80]!r}")
    return int(parts[1]), rest.partition(b"\r\n\r\n")[2]


class WorkersBackend:
    """An :class:`~supervisor.admin.backend.AdminBackend` made of the workers' answers."""

    def __init__(
        self,
        seats: Sequence[SeatView],
        *,
        daemon_id: str,
        draining: Callable[[], bool],
        owner: Callable[[str], int],
        own_metrics: Callable[[], list[Metric]],
        timeout: float = 2.0,
    ) -> None:
        self.seats = seats
        self.daemon_id = daemon_id
        self.draining = draining
        self.owner = owner
        self.own_metrics = own_metrics
        self.timeout = timeout
        self.metrics = Metrics()
        self._last: dict[int, Exposition] = {}

    def worker_gone(self, index: int) -> None:
        """Worker ``index`` died: carry what its counters last said into every later sum."""
        last = self._last.pop(index, None)
        if last is not None:
            self.metrics.carry(last)

    async def _ask_all(self, route: str, timeout: float | None = None) -> list[SeatAnswer]:
        """Every worker's JSON answer to ``GET route`` (a 503 too), or why there is none."""

        async def one(seat: SeatView) -> SeatAnswer:
            answer, error = None, None
            if seat.serving:
                try:
                    answer, error = _json_answer(
                        *await self._ask(seat, "GET", route, timeout=timeout)
                    )
                except BackendUnavailable as exc:
                    error = str(exc)
            return SeatAnswer(
                seat.index, seat.pid, seat.node_id, seat.restarts, seat.serving, answer, error
            )

        return list(await asyncio.gather(*(one(seat) for seat in self.seats)))

    async def metrics_text(self) -> bytes:
        async def one(seat: SeatView) -> None:
            try:
                status, body = await ask_worker(
                    seat.admin_path, "GET", "/metrics", b"", self.timeout
                )
                if status == 200:
                    self._last[seat.index] = parse_exposition(body.decode())
            except (OSError, TimeoutError, ValueError):
                pass  # counted with what it said last

        serving = [seat for seat in self.seats if seat.serving]
        await asyncio.gather(*(one(seat) for seat in serving))
        live = [self._last[seat.index] for seat in serving if seat.index in self._last]
        return self.metrics.exposition(live, self.own_metrics())

    async def health(self) -> tuple[bool, dict[str, Any]]:
        answers = await self._ask_all("/healthz")
        workers = []
        for seat in answers:
            answer = seat.answer or {}
            status = answer.get("status") or seat.error or "restarting"
            workers.append({"index": seat.index, "status": status})
        alive = any(w["status"] == "ok" for w in workers)
        users = sum(int((s.answer or {}).get("users", 0)) for s in answers)
        managers = sum(int((s.answer or {}).get("managers", 0)) for s in answers)
        details = {"status": "ok" if alive else "unavailable", "users": users}
        return alive, {**details, "managers": managers, "workers": workers}

    async def readiness(self) -> tuple[bool, list[str]]:
        return merge_readiness(self.draining(), await self._ask_all("/readyz"))

    async def state(self) -> dict[str, Any]:
        # a worker's own snapshot takes up to its tree's 2 s, then tens of thousands of
        # managers are written out: wait for that, not for the other routes' 2 s
        answers = await self._ask_all("/debug/state", timeout=STATE_TIMEOUT)
        return merge_states(self.daemon_id, answers)

    async def push(self, user_id: str, thread_id: str | None, message: Any) -> PushAnswer:
        """The user's worker's answer, as it gave it (with the Redis ledger, the cluster's).

        Raises :class:`InvalidIdError` (bad ids) or :class:`BackendUnavailable`.
        """
        validate_id("user_id", user_id)
        if thread_id is not None:
            validate_id("thread_id", thread_id)
        seat = self.seats[self.owner(user_id)]
        if not seat.serving:
            raise BackendUnavailable(f"worker {seat.index}, the user's, is restarting")
        body = json.dumps({"user_id": user_id, "thread_id": thread_id, "message": message})
        status, answer = await self._ask(seat, "POST", "/v1/push", body.encode())
        if status != 200:
            raise BackendUnavailable(f"worker {seat.index}: {_error_of(answer, status)}")
        return PushAnswer.from_json(json.loads(answer))

    async def cluster(self) -> dict[str, Any]:
        for seat in self.seats:
            if seat.serving:
                status, answer = await self._ask(seat, "GET", "/debug/cluster")
                if status != 200:
                    raise BackendUnavailable(_error_of(answer, status))
                view: dict[str, Any] = json.loads(answer)
                return view
        raise BackendUnavailable("no worker is serving")

    async def _ask(
        self,
        seat: SeatView,
        method: str,
        route: str,
        body: bytes = b"",
        *,
        timeout: float | None = None,
    ) -> tuple[int, bytes]:
        try:
            wait = self.timeout if timeout is None else timeout
            return await ask_worker(seat.admin_path, method, route, body, wait)
        except (OSError, TimeoutError, ValueError) as error:
            detail = f"{type(error).__name__}"
            raise BackendUnavailable(f"worker {seat.index} did not answer: {detail}") from None


def _json_answer(status: int, body: bytes) -> tuple[dict[str, Any] | None, str | None]:
    """A worker's JSON answer, or what was wrong: an error answer is no answer."""
    try:
        answer = json.loads(body)
    except ValueError:
        return None, f"HTTP {status}"
    if not isinstance(answer, dict) or status not in (200, 503):
        return None, f"HTTP {status}"
    if "error" in answer and "status" not in answer:  # /healthz says its status beside
        return None, str(answer["error"])
    return answer, None


def _error_of(answer: bytes, status: int) -> str:
    try:
        return str(json.loads(answer)["error"])
    except (ValueError, KeyError, TypeError):
        return f"HTTP {status}"
