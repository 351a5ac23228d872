"""``scripts/scale.py`` runs end to end on a few hundred connections and writes its JSON (the tool
works; no speed is asserted)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import run_script

pytestmark = pytest.mark.skipif(
    not Path("/proc/self/stat").exists(), reason="the scale check reads /proc (Linux)"
)


@pytest.mark.timeout(150)
def test_a_small_scale_run_opens_drops_and_frees_every_slot(tmp_path: Path) -> None:
    out = tmp_path / "scale.json"
    args = ["--connections", "200", "--client-procs", "2", "--ping-interval", "2"]
    done = run_script("scale", *args, "--json", str(out), timeout=140)
    data: dict[str, Any] = json.loads(out.read_text())
    for kind in ("bare", "supervised"):
        assert data[kind]["opened"] == 200, data[kind]
        assert data[kind]["clients_gone_s"] is not None
        assert data[kind]["sockets_closed_s"] is not None
        assert data[kind]["threads_back_s"] is not None
    supervised = data["supervised"]
    assert supervised["slots_held"] == 200
    assert supervised["slots_free_s"] is not None
    assert supervised["slots_held_after"] == 0
    # the daemon's own stamp of the last release: after the kill, before /metrics read 0
    assert 0 <= supervised["last_release_s"] <= supervised["slots_free_s"] + 0.05
    assert "RSS per connection" in done.stdout and "last slot freed" in done.stdout
    # the quota, exact: every user at 20 once open, and user 0's 21st refused
    assert supervised["quota_samples"][-1] == {
        "users": 10,
        "most": 20,
        "least": 20,
        "slots": 200,
        "silent_workers": 0,
        "silent_users": 0,
    }
    assert (supervised["beyond_quota_tried"], supervised["beyond_quota_429"]) == (1, 1)
    assert supervised["beyond_quota_admitted"] == 0


@pytest.mark.timeout(200)
def test_a_run_with_workers_and_source_addresses_sums_the_process_tree(tmp_path: Path) -> None:
    out = tmp_path / "scale.json"
    args = ["--connections", "400", "--bare-connections", "100", "--client-procs", "2"]
    args += ["--sources", "--workers", "2", "--ping-interval", "2", "--json", str(out)]
    done = run_script("scale", *args, timeout=190)
    data: dict[str, Any] = json.loads(out.read_text())
    assert (data["bare"]["opened"], data["supervised"]["opened"]) == (100, 400)
    supervised = data["supervised"]
    assert supervised["threads_before"] >= 2 * 7  # two workers of 7 threads, and the master
    assert supervised["quota_samples"][-1] == {
        "users": 20,
        "most": 20,
        "least": 20,
        "slots": 400,
        "silent_workers": 0,
        "silent_users": 0,
    }
    assert supervised["beyond_quota_429"] == supervised["beyond_quota_tried"] == 1
    assert supervised["slots_held_after"] == 0
    assert supervised["sockets_closed_s"] is not None and supervised["threads_back_s"] is not None
    assert "ws-supervisor --workers 2" in done.stdout
