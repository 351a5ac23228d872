"""The browser tests' fixtures: a headless Chromium per test, and where screenshots go.

Screenshots are written into one folder per run, ``ui-screenshots`` under pytest's
base temporary directory (or ``$UI_SCREENSHOTS``), and the folder is named at the end
of the run's summary, for a reader to look at them.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from tests.integration.cdp import Browser, leftovers

_written: list[Path] = []


@pytest.fixture(scope="session")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder this run's screenshots go to."""
    chosen = os.environ.get("UI_SCREENSHOTS")
    folder = Path(chosen) if chosen else tmp_path_factory.getbasetemp() / "ui-screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def screenshot_written(path: Path) -> Path:
    """Note ``path`` for the summary at the end of the run, and print it."""
    _written.append(path)
    print(f"screenshot: {path}")
    return path


@pytest_asyncio.fixture
async def browser() -> AsyncIterator[Browser]:
    """A headless Chromium of its own; not one of its processes outlives the test."""
    async with Browser.launch() as launched:
        home = launched.home
        yield launched
    assert leftovers(home) == [], "a browser process outlived the test"


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _written:
        terminalreporter.write_sep("-", "ui screenshots")
        for path in _written:
            terminalreporter.write_line(str(path))
