"""Imports point one way: actors import only the pure core, never the shell or asyncio."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PURE_CORE = {
    "supervisor.clock",
    "supervisor.codes",
    "supervisor.config",
    "supervisor.context",
    "supervisor.errors",
    "supervisor.observer",
    "supervisor.policies",
}
FORBIDDEN_IN_ACTORS = {"asyncio", "websockets", "prometheus_client"}


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def _module_files(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("path", _module_files("actors"), ids=lambda p: p.name)
def test_an_actor_module_imports_only_the_pure_core(path: Path) -> None:
    for name in _imports(path):
        top = name.split(".")[0]
        assert top not in FORBIDDEN_IN_ACTORS, f"{path.name} imports {name}"
        if top == "supervisor":
            assert any(name == m or name.startswith(m + ".") for m in PURE_CORE), (
                f"{path.name} imports the shell module {name}"
            )


@pytest.mark.parametrize(
    "path",
    [p for p in _module_files("supervisor") if p.stem in {m.split(".")[1] for m in PURE_CORE}]
    + _module_files("supervisor/policies"),
    ids=lambda p: p.name,
)
def test_a_pure_core_module_imports_no_actor_and_no_io_library(path: Path) -> None:
    for name in _imports(path):
        top = name.split(".")[0]
        assert top not in {"actors", "pykka", *FORBIDDEN_IN_ACTORS}, f"{path.name} imports {name}"


def test_only_the_context_builds_an_isolation_key() -> None:
    builders = []
    for path in _module_files("supervisor") + _module_files("actors"):
        text = path.read_text()
        for pattern in ("}:{", '+ ":" +', '":".join'):
            if pattern in text and path.name != "context.py":
                builders.append(f"{path.name}: {pattern}")
    assert builders == []


def test_only_the_bridge_hands_work_from_other_threads_to_the_event_loop() -> None:
    crossings = [
        path.name
        for path in _module_files("supervisor") + _module_files("actors")
        if path.name != "bridge.py"
        and (
            ".call_soon_threadsafe(" in path.read_text()
            or "run_coroutine_threadsafe(" in path.read_text()
        )
    ]
    assert crossings == []
