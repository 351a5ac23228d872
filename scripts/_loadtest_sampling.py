"""``scripts/loadtest``'s readings of the daemon: ``/debug/state``, ``/metrics`` and its open files.

:func:`parse_metrics` reads Prometheus' text format (:func:`metric` and
:func:`labelled` pick from it); :class:`Sampler` reads the daemon every
:data:`SAMPLE_EVERY` s during the run, keeping peaks and quota breaches;
:func:`wait_clean` polls until a condition holds; :func:`count_fds`,
:func:`fd_targets` and :func:`final_fds` read ``/proc/PID/fd``.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
import time
from typing import Any

from _toolkit import http_get  # scripts/ is on sys.path when run as a script

from supervisor.admin.dump import every_user

__all__ = [
    "FD_SETTLE",
    "SAMPLE_EVERY",
    "Metrics",
    "Sampler",
    "count_fds",
    "fd_targets",
    "final_fds",
    "labelled",
    "metric",
    "parse_metrics",
    "read_metrics",
    "read_state",
    "wait_clean",
]

SAMPLE_EVERY = 0.2
FD_SETTLE = 5.0  # seconds for open files to come back after the other checks


def parse_metrics(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Prometheus text format: {(name, labels): value}."""
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        head, _, value = line.rpartition(" ")
        name, _, rest = head.partition("{")
        labels: set[tuple[str, str]] = set()
        for part in rest.rstrip("}").split(","):
            key, sep, raw = part.partition("=")
            if sep:
                labels.add((key.strip(), raw.strip().strip('"')))
        with contextlib.suppress(ValueError):
            samples[(name, frozenset(labels))] = float(value)
    return samples


Metrics = dict[tuple[str, frozenset[tuple[str, str]]], float]


def metric(samples: Metrics, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def labelled(samples: Metrics, name: str, label: str) -> dict[str, float]:
    """Every sample of ``name`` by the value of ``label``."""
    return {
        dict(labels)[label]: value
        for (found, labels), value in samples.items()
        if found == name and label in dict(labels)
    }


class Sampler(threading.Thread):
    """/debug/state and /metrics every 0.2 s: peaks and quota breaches."""

    def __init__(self, admin: str, pid: int | None) -> None:
        super().__init__(name="sampler", daemon=True)
        self.admin, self.pid = admin, pid
        self.halt = threading.Event()
        self.lock = threading.Lock()
        self.samples = 0
        self.failures = 0
        self.peak_slots = 0
        self.peak_managers = 0.0
        self.peak_threads = 0
        self.peak_fds = 0
        self.last_slots: int | None = None
        self.breaches: list[dict[str, Any]] = []
        self.breach_count = 0

    def run(self) -> None:
        while not self.halt.wait(SAMPLE_EVERY):
            self.sample()

    def sample(self) -> tuple[dict[str, Any] | None, Metrics | None]:
        state, samples = read_state(self.admin), read_metrics(self.admin)
        with self.lock:
            self.samples += 1
            if state is None or samples is None:
                self.failures += 1
            if state is not None:
                root = state["root"]
                self.last_slots = int(root["slots_held"])
                self.peak_slots = max(self.peak_slots, self.last_slots)
                self.peak_threads = max(self.peak_threads, int(root["threads"]))
                for user in every_user(state):
                    used, limit = user.get("used"), user.get("limit")
                    if isinstance(used, int) and isinstance(limit, int) and used > limit:
                        self.breach_count += 1
                        if len(self.breaches) < 5:
                            self.breaches.append(
                                {"user_id": user.get("user_id"), "used": used, "limit": limit}
                            )
                node_used, node_limit = root.get("node_used"), root.get("node_limit")
                numbers = isinstance(node_used, int) and isinstance(node_limit, int)
                if numbers and node_used > node_limit:
                    self.breach_count += 1
            if samples is not None:
                active = metric(samples, "ws_supervisor_managers_active")
                self.peak_managers = max(self.peak_managers, active)
            if self.pid is not None:
                fds = count_fds(self.pid)
                if fds is not None:
                    self.peak_fds = max(self.peak_fds, fds)
        return state, samples


def read_state(admin: str) -> dict[str, Any] | None:
    try:
        status, body = http_get(admin + "/debug/state")
        if status != 200:
            return None
        state: dict[str, Any] = json.loads(body)
        return state
    except (OSError, ValueError):
        return None


def read_metrics(admin: str) -> Metrics | None:
    try:
        status, body = http_get(admin + "/metrics")
        return parse_metrics(body) if status == 200 else None
    except OSError:
        return None


def count_fds(pid: int) -> int | None:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


def fd_targets(pid: int) -> dict[str, str] | None:
    """The daemon's open files: fd number to what it points at (``socket:[inode]``, a path)."""
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return None
    targets = {}
    for fd in fds:
        with contextlib.suppress(OSError):  # closed since the listing
            targets[fd] = os.readlink(f"/proc/{pid}/fd/{fd}")
    return targets


def final_fds(pid: int | None, start: dict[str, str] | None) -> int | None:
    """The daemon's open files, read until back to the ``start`` count or for FD_SETTLE s.

    Any left beyond the start are named on stderr.
    """
    if pid is None or start is None:
        return None
    deadline = time.monotonic() + FD_SETTLE
    while (fds := count_fds(pid)) is not None and fds > len(start):
        if time.monotonic() >= deadline:
            extra = sorted(set((fd_targets(pid) or {}).items()) - set(start.items()))
            print(f"loadtest: open files left beyond the start: {extra}", file=sys.stderr)
            break
        time.sleep(0.1)
    return fds


def wait_clean(admin: str, timeout: float, check: Any) -> tuple[bool, float, Any]:
    """Poll until ``check(state, metrics)`` is true; (ok, seconds waited, last reading)."""
    started = time.monotonic()
    last: Any = None
    while True:
        state, samples = read_state(admin), read_metrics(admin)
        if state is not None and samples is not None:
            last = (state, samples)
            if check(state, samples):
                return True, time.monotonic() - started, last
        if time.monotonic() - started >= timeout:
            return False, time.monotonic() - started, last
        time.sleep(SAMPLE_EVERY)
