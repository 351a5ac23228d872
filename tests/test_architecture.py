"""The layout's rules: the engine never looks up, the product lives in rooms, no cycle.

Each test checks one rule of docs/ARCHITECTURE.md ("Layout") on the source
as it is, by reading every module's imports (those behind ``TYPE_CHECKING``
included) and text.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("actors", "supervisor")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def source_files(package: str) -> list[Path]:
    return sorted(p for p in (ROOT / package).rglob("*.py") if "profiles" not in p.parts)


MODULES = {module_name(p): p for package in PACKAGES for p in source_files(package)}


def imports_of(path: Path) -> set[str]:
    """Every module ``path`` imports, anywhere in it; ``from pkg import mod`` names ``pkg.mod``."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(
                f"{node.module}.{a.name}"
                for a in node.names
                if f"{node.module}.{a.name}" in MODULES
            )
    return found


def top(name: str) -> str:
    return name.split(".", maxsplit=1)[0]


@pytest.mark.parametrize("name", sorted(n for n in MODULES if top(n) == "actors"))
def test_the_engine_never_imports_the_product_asyncio_or_websockets(name: str) -> None:
    forbidden = {"supervisor", "asyncio", "websockets", "prometheus_client", "redis"}
    assert not {i for i in imports_of(MODULES[name]) if top(i) in forbidden}


PYKKA_PRIVATE = re.compile(
    r"pykka\._|_ActorStop|_actor_refs|_actor_loop|_handle_receive|_handle_failure"
    r"|_create_actor_inbox|_create_future|_start_actor_loop|\b_stop\(\)|\._envelope\b"
)
FENCE = "actors._runtime.pykka_fence"


@pytest.mark.parametrize("name", sorted(n for n in MODULES if n != FENCE))
def test_only_the_pykka_fence_names_a_private_part_of_pykka(name: str) -> None:
    assert not PYKKA_PRIVATE.findall(MODULES[name].read_text())


def test_the_pykka_registry_is_left_as_pykka_made_it_by_importing_the_engine() -> None:
    code = (
        "import pykka, actors, actors.tree, actors._runtime.dispatch; "
        "print(type(pykka.ActorRegistry._actor_refs).__name__)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=30
    )
    assert result.stdout.strip() == "list", result.stderr


LOOP_PRIVATE = re.compile(
    r"asyncio\._|\._read_ready_cb|\.parser\b|parser_exc|websockets\.\w+\._"
    r"|\._protocol_factory|\._make_socket_transport"
)
CONNECTION = "supervisor.front.connection"
"""The package of the front that fences those internals in (its modules)."""


@pytest.mark.parametrize(
    "name", sorted(n for n in MODULES if n != CONNECTION and not n.startswith(f"{CONNECTION}."))
)
def test_only_the_front_connection_touches_websockets_or_asyncio_internals(name: str) -> None:
    assert not LOOP_PRIVATE.findall(MODULES[name].read_text())


ROOMS = {"front", "admin", "cluster", "config", "workers"}
PROCESS = {"cli", "daemon", "logs", "gc_tuning", "errors"}


def test_the_product_is_its_process_modules_and_five_rooms() -> None:
    here = {p.stem for p in (ROOT / "supervisor").glob("*.py")} - {"__init__"}
    rooms = {p.name for p in (ROOT / "supervisor").iterdir() if (p / "__init__.py").exists()}
    assert here == PROCESS
    assert rooms == ROOMS


@pytest.mark.parametrize(
    "folder",
    sorted({p.parent for p in source_files("supervisor")}),
    ids=lambda p: str(p.relative_to(ROOT)),
)
def test_no_folder_of_the_product_holds_more_than_about_twelve_modules(folder: Path) -> None:
    modules = [p for p in folder.glob("*.py") if p.name != "__init__.py"]
    assert len(modules) <= 13, sorted(p.name for p in modules)


@pytest.mark.parametrize("name", sorted(n for n in MODULES if top(n) == "supervisor"))
def test_a_room_of_the_product_imports_no_other_room_but_config(name: str) -> None:
    """front, admin and cluster each stand alone on the engine and the config.

    The process modules (cli, daemon) put them together; admin may read the
    cluster's ledger and the front's bridge, which it serves; workers (the
    master of ``serve --workers``) is a process of its own, made of the
    front's checks, the admin listener and the cluster's clean-up.
    """
    parts = name.split(".")
    if len(parts) < 3 or parts[1] not in ROOMS:
        return
    allowed = {
        "front": {"config"},
        "cluster": {"config"},
        "config": set(),
        "admin": {"config", "cluster", "front"},
        "workers": {"config", "front", "admin", "cluster"},
    }[parts[1]] | {parts[1]}
    for imported in imports_of(MODULES[name]):
        bits = imported.split(".")
        if bits[0] == "supervisor" and len(bits) > 1 and bits[1] in ROOMS:
            assert bits[1] in allowed, f"{name} imports {imported}"
        assert not (bits[0] == "supervisor" and len(bits) > 1 and bits[1] in {"cli", "daemon"})


def test_no_module_imports_itself_around_a_circle() -> None:
    graph = {
        name: {i for i in imports_of(path) if i in MODULES and i != name}
        for name, path in MODULES.items()
    }
    done: set[str] = set()
    path: list[str] = []

    def visit(node: str) -> None:
        if node in path:
            raise AssertionError("import cycle: " + " -> ".join([*path[path.index(node) :], node]))
        if node in done:
            return
        path.append(node)
        for neighbour in sorted(graph[node]):
            visit(neighbour)
        path.pop()
        done.add(node)

    for node in sorted(graph):
        visit(node)


def test_only_the_context_builds_an_isolation_key() -> None:
    builders = [
        f"{name}: {pattern}"
        for name, path in MODULES.items()
        for pattern in ("}:{", '+ ":" +', '":".join')
        if pattern in path.read_text() and name != "actors.context"
    ]
    assert builders == []


def test_only_the_bridge_hands_work_from_other_threads_to_the_event_loop() -> None:
    crossings = [
        name
        for name, path in MODULES.items()
        if name != "supervisor.front.bridge"
        and re.search(r"\.call_soon_threadsafe\(|run_coroutine_threadsafe\(", path.read_text())
    ]
    assert crossings == []


TEST_TREES = {"actors": ROOT / "tests" / "actors", "supervisor": ROOT / "tests" / "supervisor"}


def names_tested(package: str) -> dict[str, list[Path]]:
    """For every test module of the mirrored tree, the source module it is named after."""
    tests: dict[str, list[Path]] = {}
    for test in TEST_TREES[package].rglob("test_*.py"):
        folder = test.parent.relative_to(TEST_TREES[package])
        stem = test.stem.removeprefix("test_")
        candidates = [
            ".".join([package, *folder.parts, "_".join(stem.split("_")[:n])])
            for n in range(len(stem.split("_")), 0, -1)
        ]
        name = next((c for c in candidates if c in MODULES), None)
        tests.setdefault(name or f"<none: {test.relative_to(ROOT)}>", []).append(test)
    return tests


@pytest.mark.parametrize("package", PACKAGES)
def test_every_test_module_of_the_mirrored_trees_is_named_after_a_module_beside_it(
    package: str,
) -> None:
    orphans = sorted(name for name in names_tested(package) if name.startswith("<none"))
    assert orphans == []


@pytest.mark.parametrize("package", PACKAGES)
def test_every_module_has_a_test_module_named_after_it(package: str) -> None:
    untested = {
        name
        for name, path in MODULES.items()
        if top(name) == package and path.name != "__init__.py"
    } - set(names_tested(package))
    assert sorted(untested) == []
