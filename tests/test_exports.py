"""The public names: each package's ``__all__`` is true, and one name has one meaning.

As websockets' own ``tests/test_exports.py``: every name a package offers
resolves to the object its module defines, the lazy table and the typing
imports agree with ``__all__``, every public module declares ``__all__``,
and no name is declared by two modules.
"""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

import actors
import supervisor

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"actors": actors, "supervisor": supervisor}


def typing_imports(package: str) -> dict[str, str]:
    """``{name: module}`` imported behind ``if TYPE_CHECKING:`` in the package's ``__init__``."""
    tree = ast.parse((ROOT / package / "__init__.py").read_text())
    names: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", "") == "TYPE_CHECKING":
            for statement in node.body:
                assert isinstance(statement, ast.ImportFrom) and statement.module
                names.update((alias.name, statement.module) for alias in statement.names)
    return names


@pytest.mark.parametrize("package", PACKAGES)
def test_the_lazy_table_the_typing_imports_and_all_name_the_same_things(package: str) -> None:
    module = PACKAGES[package]
    lazy: dict[str, str] = module._EXPORTS
    assert typing_imports(package) == lazy
    assert sorted(set(module.__all__) - {"__version__"}) == sorted(lazy)


@pytest.mark.parametrize("package", PACKAGES)
def test_every_public_name_resolves_to_what_its_module_defines(package: str) -> None:
    module = PACKAGES[package]
    lazy: dict[str, str] = module._EXPORTS
    for name, where in lazy.items():
        assert getattr(module, name) is getattr(importlib.import_module(where), name), name
        assert name in importlib.import_module(where).__all__, f"{where} does not export {name}"
    assert set(lazy) <= set(dir(module))


@pytest.mark.parametrize("package", PACKAGES)
def test_an_unknown_name_is_an_attribute_error(package: str) -> None:
    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        _ = PACKAGES[package].nope


def public_modules() -> list[str]:
    names = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            if parts[-1] == "__init__" or any(part.startswith("_") for part in parts):
                continue
            names.append(".".join(parts))
    return names


@pytest.mark.parametrize("name", public_modules())
def test_every_public_module_declares_all_and_defines_each_name(name: str) -> None:
    module = importlib.import_module(name)
    declared = getattr(module, "__all__", None)
    assert declared is not None, f"{name} has no __all__"
    for exported in declared:
        assert hasattr(module, exported), f"{name}.__all__ names {exported}, which is not there"


def test_no_name_is_declared_by_two_modules() -> None:
    seen: dict[str, str] = {}
    clashes = []
    for name in public_modules():
        for exported in importlib.import_module(name).__all__:
            if exported in seen:
                clashes.append(f"{exported}: {seen[exported]} and {name}")
            seen.setdefault(exported, name)
    assert clashes == []


def test_importing_the_product_package_loads_no_server_and_no_actor() -> None:
    code = (
        "import sys, supervisor, actors; "
        "print(sorted(m for m in ('asyncio', 'websockets', 'pykka', 'prometheus_client', "
        "'redis', 'actors.tree') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=30
    )
    assert result.stdout.strip() == "[]", result.stdout + result.stderr
