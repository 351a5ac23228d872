"""``scripts/dropfloor.py`` sees every connection of its killed clients go, and leaves nothing
running (the tool works; no speed is asserted)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import SCRIPT_PYTHON, SCRIPTS, run_script


def _children_of_tool() -> list[str]:
    done = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True)
    return [line for line in done.stdout.splitlines() if "dropfloor.py --" in line]


@pytest.mark.timeout(90)
def test_a_small_dropfloor_run_sees_every_connection_lost_after_the_kill(tmp_path: Path) -> None:
    out = tmp_path / "dropfloor.json"
    args = ["--connections", "1500", "--servers", "2", "--clients", "3", "--json", str(out)]
    done = run_script("dropfloor", *args, timeout=80)
    found: dict[str, Any] = json.loads(out.read_text())
    assert (found["connections"], found["servers"], found["clients"]) == (1500, 2, 3)
    assert found["all_lost_seen"] is True
    assert found["lost_seen"] == 1500
    assert 0 < found["first_client_gone_s"] <= found["clients_gone_s"]
    assert found["last_lost_s"] > 0
    assert "the servers saw 1,500 lost" in done.stdout
    assert _children_of_tool() == []  # every server and client process stopped


@pytest.mark.timeout(30)
def test_dropfloor_refuses_more_connections_per_process_than_its_open_files_allow() -> None:
    argv = [SCRIPT_PYTHON, str(SCRIPTS / "dropfloor.py"), "--connections", "10000000"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=20, check=False)
    assert done.returncode == 2
    assert "connections per process" in done.stderr
