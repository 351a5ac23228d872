"""A short soak: ``scripts/loadtest.py --spawn`` with killed and frozen client processes.

The load test starts its own daemon (ci profile, loopback, free ports), runs
client processes with churn, kills 10% of them and freezes 5%, then checks
that every slot, manager and thread comes back, that no user ever held more
than the quota, and that no id was ever mixed up.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import run_script

USERS, PER_USER = 4, 5

pytestmark = pytest.mark.skipif(
    not Path("/proc/self/stat").exists(), reason="the load test reads /proc (Linux)"
)


def run_loadtest(report: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    args = ["--spawn", "--users", str(USERS), "--per-user", str(PER_USER)]
    args += ["--churn", "20", "--kill-pct", "10", "--freeze-pct", "5", "--procs", "4"]
    return run_script("loadtest", *args, "--json", str(report), *extra, timeout=140)


@pytest.mark.timeout(150)
def test_a_short_soak_with_killed_and_frozen_clients_leaks_nothing(tmp_path: Path) -> None:
    path = tmp_path / "report.json"
    run_loadtest(path, "--duration", "55")
    report: dict[str, Any] = json.loads(path.read_text())
    assert report["ok"] is True and report["failures"] == []
    assert report["quota_breaches"] == 0
    assert report["mismatches"] == {"server": 0, "welcome": 0, "echo": 0}
    slots = report["slots"]
    assert slots["final_slots_held"] == 0 and slots["final_managers_active"] == 0
    assert 0 < slots["peak_slots_held"] <= USERS * PER_USER
    assert report["threads"]["final"] <= report["threads"]["start"] + 10
    assert report["fds"]["final"] <= report["fds"]["start"]
    processes = report["processes"]
    assert processes["killed"] >= 1 and processes["frozen"] >= 1
    admissions = report["admissions"]
    assert admissions["admitted"] > 0 and admissions["rejected_below_quota"] == 0
    assert report["daemon_exit_code"] == 0
