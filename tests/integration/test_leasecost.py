"""``scripts/leasecost.py`` runs end to end on a real redis-server and writes its JSON (the tool
works; no speed is asserted)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import run_script


@pytest.mark.timeout(120)
def test_a_small_run_counts_every_kind_of_call_and_leaves_redis_empty(tmp_path: Path) -> None:
    out = tmp_path / "lease.json"
    args = ["--users", "30", "--per-user", "5", "--rounds", "2", "--json", str(out)]
    done = run_script("leasecost", *args, timeout=110)
    data: dict[str, Any] = json.loads(out.read_text())
    assert data["slots"] == 150 and data["keys_left"] == 0
    assert data["memory_bytes_per_slot"] > 0
    assert len(data["renew_all_s_wall"]) == 2
    for key in ("acquire_us_redis_cpu", "renew_us_redis_cpu_per_user", "release_us_redis_cpu"):
        assert data[key] >= 0, key
    assert "RENEW:" in done.stdout and "bytes per slot" in done.stdout
