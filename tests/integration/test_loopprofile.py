"""``scripts/loopprofile.py`` profiles both servers' event loops through a short churn (the tool
works; no speed is asserted)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import run_script


@pytest.mark.timeout(180)
def test_a_short_run_counts_each_servers_calls_per_connection_and_ranks_the_difference(
    tmp_path: Path,
) -> None:
    out = tmp_path / "loopprofile.json"
    args = ["--seconds", "2", "--top", "5", "--json", str(out)]
    done = run_script("loopprofile", *args, timeout=170)
    found: dict[str, dict[str, Any]] = json.loads(out.read_text())
    for kind in ("bare", "supervised"):
        assert found[kind]["connections"] > 10
        assert found[kind]["calls_per_connection"] > 100
    supervised = found["supervised"]["functions"]
    assert any(key.startswith("actors/tree.py:") for key in supervised)  # the tree was profiled
    assert not any(key.startswith("actors/") for key in found["bare"]["functions"])
    assert "supervised Python calls per connection" in done.stdout
    assert "the 5 that add most, then least" in done.stdout
