"""``scripts/pushcost.py`` pushes locally and across two nodes on a real redis-server and writes
its JSON (the tool works; no speed is asserted)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import run_script


@pytest.mark.timeout(120)
def test_a_short_pushcost_run_times_local_and_cross_node_pushes_beside_a_ping(
    tmp_path: Path,
) -> None:
    out = tmp_path / "pushcost.json"
    args = ["--runs", "2", "--samples", "20", "--json", str(out)]
    done = run_script("pushcost", *args, timeout=110)
    runs: list[dict[str, Any]] = json.loads(out.read_text())
    assert len(runs) == 2
    for run in runs:
        assert run["push_samples"] == 20
        assert 0 < run["push_local_frame_p50_ms"] <= run["push_local_frame_p99_ms"]
        assert 0 < run["push_cross_frame_p50_ms"] <= run["push_cross_frame_p99_ms"]
        assert run["ping_p50_ms"] > 0
        added = run["push_cross_frame_p50_ms"] - run["push_local_frame_p50_ms"]
        assert run["added_p50_ms"] == pytest.approx(added)
    assert "run 2: local" in done.stdout
    assert "target at p50 (added <= one PING): met in" in done.stdout
    assert "medians of the runs: added" in done.stdout
