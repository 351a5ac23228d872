"""Shared helpers for the test suite: waiting, configs, ports, trees."""

from __future__ import annotations

import importlib
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from actors.context import UserExecutionContext
from actors.ports import Admission, Handle, QueuePort
from actors.tree import SupervisionTree
from supervisor.config.load import config_to_dict, load_profile, parse_config
from supervisor.config.schema import Config

__all__ = [
    "ACTOR_THREAD_PREFIXES",
    "ROOT",
    "SCRIPTS",
    "SCRIPT_PYTHON",
    "actor_threads",
    "bearer_status",
    "connect",
    "import_script",
    "make_config",
    "wait_for_value",
    "wait_until",
]

ROOT = Path(__file__).resolve().parents[1]
"""The checkout."""

SCRIPTS = ROOT / "scripts"
"""The tools (bench, instructions, ...), run as programs or imported by the tests of their parts."""

_VENV_PYTHON = ROOT / ".venv" / "bin" / "python"
SCRIPT_PYTHON = str(_VENV_PYTHON) if _VENV_PYTHON.exists() else sys.executable
"""The interpreter a script runs under: the checkout's venv, else the one running the tests."""


def run_script(name: str, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    """Run ``scripts/<name>.py args`` from the checkout's root; assert it exits 0 (output shown)."""
    argv = [SCRIPT_PYTHON, str(SCRIPTS / f"{name}.py"), *args]
    done = subprocess.run(
        argv, capture_output=True, text=True, timeout=timeout, cwd=ROOT, check=False
    )
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout}\n{done.stderr[-3000:]}"
    return done


def import_script(monkeypatch: pytest.MonkeyPatch, name: str) -> ModuleType:
    """``scripts/<name>.py`` as a module, with ``scripts/`` on the path only for the test."""
    monkeypatch.syspath_prepend(str(SCRIPTS))
    return importlib.import_module(name)


ACTOR_THREAD_PREFIXES = ("ManagerActor", "UserSupervisorActor", "RootMonitorActor", "ws-supervisor")


def actor_threads() -> list[threading.Thread]:
    """Threads of actors and of the ticker that are still alive."""
    return [t for t in threading.enumerate() if t.name.startswith(ACTOR_THREAD_PREFIXES)]


def wait_until(
    predicate: Callable[[], bool], timeout: float = 5.0, what: str | Callable[[], str] = ""
) -> None:
    """Poll ``predicate`` until true; fail the test after ``timeout`` seconds.

    ``what`` names what was awaited; a callable is called at the failure, to
    describe the state then.
    """
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            described = what() if callable(what) else what
            raise AssertionError(f"timed out after {timeout}s waiting for {described or predicate}")
        time.sleep(0.002)


def wait_for_value(read: Callable[[], float], expected: float, timeout: float = 5.0) -> None:
    """Wait until ``read()`` returns ``expected`` (a metric, a count)."""
    wait_until(lambda: read() == expected, timeout, f"value {expected}")


def _merge(base: dict[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in overrides.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def make_config(overrides: Mapping[str, Any] | None = None) -> Config:
    """The ci profile with ``overrides`` (a nested dict of TOML tables) applied."""
    base = config_to_dict(load_profile("ci", env={}))
    return parse_config(_merge(base, overrides or {}))


def connect(
    tree: SupervisionTree,
    user_id: str,
    thread_id: str | None = None,
    *,
    confirm_close: bool = True,
    timeout: float = 5.0,
) -> tuple[Admission, QueuePort, UserExecutionContext]:
    """Admit one connection through a :class:`QueuePort`, as a threaded caller would."""
    context = UserExecutionContext.from_websocket_request(user_id, thread_id)
    port = QueuePort(confirm_close=confirm_close)
    admission = tree.admit(context, port, timeout=timeout)
    if admission.handle is not None:
        port.bind(admission.handle)
    return admission, port, context


def handle_of(admission: Admission) -> Handle:
    """The handle of an admission that must have been admitted."""
    assert admission.handle is not None, f"not admitted: {admission}"
    return admission.handle


def bearer_status(url: str, token: str | None = None) -> int:
    """The HTTP status of a GET of ``url``, with ``Authorization: Bearer token`` if one is given."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers)) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        error.close()
        return error.code
