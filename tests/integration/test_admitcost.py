"""``scripts/admitcost.py`` admits and closes in-process and writes its JSON (the tool works; no
speed is asserted)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import SCRIPT_PYTHON, SCRIPTS, run_script

ADMITCOST = SCRIPTS / "admitcost.py"


@pytest.mark.timeout(60)
def test_a_short_admitcost_run_times_every_admission_and_leaves_no_slot(tmp_path: Path) -> None:
    out = tmp_path / "admitcost.json"
    args = ["--users", "3", "--held", "4", "--count", "300", "--json", str(out)]
    done = run_script("admitcost", *args, timeout=50)
    data: dict[str, Any] = json.loads(out.read_text())
    assert (data["users"], data["held"], data["count"]) == (3, 4, 300)
    assert data["cpu_us_per_connection"] > 0
    assert 0 <= data["waited"] <= 300
    assert data["slots_held_after"] == 0
    assert "us of CPU per admission and close" in done.stdout


@pytest.mark.timeout(30)
def test_admitcost_refuses_a_held_count_that_would_reach_the_quota() -> None:
    argv = [SCRIPT_PYTHON, str(ADMITCOST), "--held", "19"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=20, check=False)
    assert done.returncode == 2
    assert "--held between 0 and 18" in done.stderr
