"""``ws-supervisor dump``: read a running daemon's state and draw it as a tree.

Runs in the command-line process, on its only thread: :func:`fetch_state`
blocks on one HTTP request to the admin listener (``GET /debug/state``), and
:func:`render_state` is a pure function of the snapshot that
:meth:`actors.tree.SupervisionTree.snapshot` returns (under ``serve
--workers N``, with a line for each worker first).
"""

from __future__ import annotations

import http.client
import json
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any

from actors.errors import WsSupervisorError

__all__ = ["every_user", "fetch_cluster", "fetch_state", "render_cluster", "render_state"]

_RESET = "\x1b[0m"
_STYLES = {
    "ok": "\x1b[32m",  # green
    "warning": "\x1b[33m",  # yellow
    "critical": "\x1b[31m",  # red
    "emergency": "\x1b[1;7;31m",  # bold red, reversed
}
_DIM = "\x1b[2m"
_ALERTS_SHOWN = 5


def fetch_state(admin_url: str, token: str | None, timeout: float = 5.0) -> dict[str, Any]:
    """GET ``{admin_url}/debug/state``; raises :class:`WsSupervisorError` with the reason."""
    state = _fetch(
        admin_url, "/debug/state", {"root"}, "a state dump", token=token, timeout=timeout
    )
    if "users" not in state and "workers" not in state:  # one tree's, or every worker's
        url = admin_url.rstrip("/") + "/debug/state"
        raise WsSupervisorError(f"cannot read {url}: the answer is not a state dump")
    return state


def every_user(state: dict[str, Any]) -> list[dict[str, Any]]:
    """The users of a state dump: one tree's, or every worker's (by user id).

    Under ``serve --workers N`` the users are listed by worker
    (``{"workers": [{"worker_id", "root", "users"}, ...]}``), each tagged
    with its ``worker``.
    """
    if "workers" not in state:
        return list(state.get("users", []))
    users = [user for worker in state["workers"] for user in worker.get("users", [])]
    return sorted(users, key=lambda user: str(user.get("user_id", "")))


def fetch_cluster(admin_url: str, token: str | None, timeout: float = 5.0) -> dict[str, Any]:
    """GET ``{admin_url}/debug/cluster``: every node's slots, as the daemon reads them in Redis."""
    keys = {"node_id", "users"}
    return _fetch(admin_url, "/debug/cluster", keys, "a cluster view", token=token, timeout=timeout)


def _fetch(
    admin_url: str, path: str, keys: set[str], what: str, *, token: str | None, timeout: float
) -> dict[str, Any]:
    url = admin_url.rstrip("/") + path
    scheme = urllib.parse.urlsplit(url).scheme
    if scheme not in ("http", "https"):
        raise WsSupervisorError(f"cannot read {url}: the admin URL must be http:// or https://")
    headers = {"Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body: bytes = response.read()
    except urllib.error.HTTPError as error:
        with error:
            reason = f"HTTP {error.code} {error.reason}{_error_detail(error.read())}"
        if error.code == 401:
            reason += " (pass the admin token with --token-env)" if not token else ""
        raise WsSupervisorError(f"cannot read {url}: {reason}") from None
    except urllib.error.URLError as error:
        raise WsSupervisorError(f"cannot read {url}: {_os_reason(error.reason, timeout)}") from None
    except (OSError, http.client.HTTPException) as error:
        raise WsSupervisorError(f"cannot read {url}: {_os_reason(error, timeout)}") from None
    try:
        state = json.loads(body)
    except ValueError as error:
        raise WsSupervisorError(f"cannot read {url}: the answer is not JSON ({error})") from None
    if not isinstance(state, dict) or not keys <= state.keys():
        raise WsSupervisorError(f"cannot read {url}: the answer is not {what}")
    return state


def _error_detail(body: bytes) -> str:
    try:
        message = json.loads(body)["error"]
    except (ValueError, KeyError, TypeError):
        return ""
    return f": {message}"


def _os_reason(reason: object, timeout: float) -> str:
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused (is the daemon running, with its admin listener there?)"
    if isinstance(reason, TimeoutError):
        return f"no answer within {timeout:g}s"
    if isinstance(reason, socket.gaierror):
        return f"unknown host ({reason.strerror})"
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror.lower()
    return str(reason) or type(reason).__name__


def render_state(state: dict[str, Any], color: bool, now: float | None = None) -> str:
    """The snapshot as a tree of lines; ANSI colors for the levels if ``color``.

    ``now`` (epoch seconds, default the current time) is what idle times are
    measured from. The last few alerts follow the tree.
    """
    now = time.time() if now is None else now
    root: dict[str, Any] = state.get("root", {})
    users = every_user(state)

    def level(name: str, pad: int = 0) -> str:
        style = _STYLES.get(name, "")
        shown = f"{style}{name}{_RESET}" if color and style else name
        return shown + " " * (pad - len(name))

    def dim(text: str) -> str:
        return f"{_DIM}{text}{_RESET}" if color else text

    alerts: list[dict[str, Any]] = root.get("alerts", [])
    head = [
        f"node {root.get('node_id') or '-'}",
        level(str(root.get("node_level", "?"))),
        f"{root.get('node_used', '?')}/{root.get('node_limit', '?')}",
        f"users {len(users)}",
        f"threads {root.get('threads', '?')}",
        f"alerts {len(alerts)}",
    ]
    lines = ["  ".join(head)]
    lines.extend(_worker_line(worker) for worker in state.get("workers", []))
    names = [str(user.get("user_id", "?")) for user in users]
    usages = [f"{user.get('used', '?')}/{user.get('limit', '?')}" for user in users]
    name_width = max(map(len, names), default=0)
    usage_width = max(map(len, usages), default=0)
    level_width = max((len(str(user.get("level", "?"))) for user in users), default=0)
    for index, user in enumerate(users):
        last_user = index == len(users) - 1
        line = [names[index].ljust(name_width), usages[index].ljust(usage_width)]
        line.append(level(str(user.get("level", "?")), level_width))
        if "error" in user:
            line.append(f"error: {user['error']}")
        else:
            line.append(f"pool {user.get('pool_idle', 0)}  restarts {user.get('restarts', 0)}")
            if root.get("ledger") == "redis":
                line.append(f"cluster {user.get('cluster_used', '?')}/{user.get('limit', '?')}")
        lines.append(("└── " if last_user else "├── ") + "  ".join(line))
        stem = "    " if last_user else "│   "
        managers: list[dict[str, Any]] = user.get("managers", [])
        rows = [_manager_columns(manager, now, dim) for manager in managers]
        widths = [max((len(row[i]) for row in rows), default=0) for i in range(2)]
        for position, row in enumerate(rows):
            branch = "└── " if position == len(rows) - 1 else "├── "
            cells = [row[0].ljust(widths[0]), row[1].ljust(widths[1]), *row[2:]]
            lines.append(stem + branch + "  ".join(cells))
    if alerts:
        lines.append("")
        lines.extend(dim(_alert_line(alert)) for alert in alerts[-_ALERTS_SHOWN:])
    return "\n".join(lines)


def render_cluster(view: dict[str, Any], user_id: str | None = None) -> str:
    """Every user's slots on every node (``GET /debug/cluster``), one line per slot.

    With ``user_id``, only that user. Slots are listed oldest first, with the
    node holding each and the seconds left on its lease.
    """
    users: list[dict[str, Any]] = view.get("users", [])
    if user_id is not None:
        users = [user for user in users if user.get("user_id") == user_id]
    lines = [f"cluster ledger, read by node {view.get('node_id', '?')}: {len(users)} user(s)"]
    for user in users:
        slots: list[dict[str, Any]] = user.get("slots", [])
        nodes = sorted({str(slot.get("node_id", "?")) for slot in slots})
        lines.append(f"{user.get('user_id', '?')}  {len(slots)} slot(s) on {', '.join(nodes)}")
        for position, slot in enumerate(slots):
            branch = "└── " if position == len(slots) - 1 else "├── "
            cells = [
                str(slot.get("key", "?")),
                f"node {slot.get('node_id', '?')}",
                str(slot.get("websocket_id", "?")),
                f"lease {slot.get('lease_left', '?')}s",
            ]
            lines.append(branch + "  ".join(cells))
    if user_id is not None and not users:
        lines.append(f"{user_id}: no slots on any node")
    return "\n".join(lines)


def _manager_columns(manager: dict[str, Any], now: float, dim: Callable[[str], str]) -> list[str]:
    columns = [
        str(manager.get("websocket_id", "?")),
        str(manager.get("thread_id", "?")),
        str(manager.get("state", "?")),
        f"in {manager.get('messages_in', 0)} out {manager.get('messages_out', 0)}",
    ]
    last = manager.get("last_activity")
    if isinstance(last, int | float):
        columns.append(f"idle {max(0.0, now - last):.1f}s")
    if manager.get("outbound_queued"):
        columns.append(f"queued {manager['outbound_queued']}")
    if manager.get("restarts"):
        columns.append(f"restarts {manager['restarts']}")
    if manager.get("holds_slot") is False:
        columns.append(dim("no slot"))
    if manager.get("client"):
        via = f" via {manager['proxy']}" if manager.get("proxy") else ""
        columns.append(dim(f"from {manager['client']}{via}"))
    return columns


def _worker_line(worker: dict[str, Any]) -> str:
    """One worker of ``serve --workers``: whether it serves, its process and its figures."""
    cells = [
        f"worker {worker.get('worker_id', '?')}",
        "serving" if worker.get("serving") else "down",
        f"pid {worker.get('pid') or '-'}",
        f"node {worker.get('node_id') or '-'}",
    ]
    if "error" in worker:
        cells.append(f"error: {worker['error']}")
    else:
        root = worker.get("root", {})
        cells.append(f"used {root.get('node_used', '?')}/{root.get('node_limit', '?')}")
        cells.append(f"users {len(worker.get('users', []))}")
        cells.append(f"threads {root.get('threads', '?')}")
    cells.append(f"restarts {worker.get('restarts', 0)}")
    return "  ".join(cells)


def _alert_line(alert: dict[str, Any]) -> str:
    at = alert.get("at")
    when = time.strftime("%H:%M:%S", time.localtime(at)) if isinstance(at, int | float) else "?"
    scope = f"user {alert['user_id']}" if alert.get("user_id") else alert.get("scope", "?")
    return f"alert {when}  {scope}  {alert.get('from', '?')} → {alert.get('to', '?')}"
