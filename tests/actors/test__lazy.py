"""lazy_exports: a package's public names, each imported from its module on first use."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from actors._lazy import lazy_exports

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def probe_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The name of a module, never imported yet, that defines ``ANSWER = 42``."""
    name = f"lazy_probe_{uuid.uuid4().hex}"
    (tmp_path / f"{name}.py").write_text("ANSWER = 42\nOTHER = 'other'\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    sys.modules.pop(name, None)


def test_a_name_is_imported_from_its_module_only_when_first_asked_for(probe_module: str) -> None:
    getattr_, _ = lazy_exports("pkg", {"ANSWER": probe_module})
    assert probe_module not in sys.modules
    assert getattr_("ANSWER") == 42
    assert probe_module in sys.modules


def test_a_name_resolves_to_the_object_its_module_holds(probe_module: str) -> None:
    getattr_, _ = lazy_exports("pkg", {"ANSWER": probe_module, "OTHER": probe_module})
    assert getattr_("OTHER") == "other"
    sys.modules[probe_module].ANSWER = 43  # type: ignore[attr-defined]
    assert getattr_("ANSWER") == 43  # read from the module each time, never copied


def test_a_name_not_exported_is_an_attribute_error_naming_the_package_and_the_name(
    probe_module: str,
) -> None:
    getattr_, _ = lazy_exports("some.pkg", {"ANSWER": probe_module})
    with pytest.raises(AttributeError, match=r"module 'some\.pkg' has no attribute 'OTHER'"):
        getattr_("OTHER")
    assert probe_module not in sys.modules  # a miss imports nothing


def test_dir_lists_the_exported_names_sorted(probe_module: str) -> None:
    _, dir_ = lazy_exports("pkg", {"b": probe_module, "a": probe_module, "C": probe_module})
    assert dir_() == ["C", "a", "b"]
    assert probe_module not in sys.modules


def test_importing_the_engine_package_imports_none_of_its_modules_but_the_lazy_one() -> None:
    code = "import sys, actors; print(sorted(m for m in sys.modules if m.startswith('actors.')))"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=30
    )
    assert result.stdout.strip() == "['actors._lazy']", result.stderr
