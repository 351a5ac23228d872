"""``scripts/bench.py --quick`` runs end to end and writes its JSON (the tool works; no speed is
asserted)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "scripts" / "bench.py"
VENV_PYTHON = ROOT / ".venv" / "bin" / "python"
PYTHON = str(VENV_PYTHON) if VENV_PYTHON.exists() else sys.executable

POSITIVE = (
    "conns_per_s",
    "connect_p50_ms",
    "connect_p99_ms",
    "cpu_ms_per_conn",
    "switches_per_conn",
    "msgs_per_s",
    "cpu_us_per_msg",
    "rtt_p50_us",
    "rtt_p99_us",
    "rss_idle_mib",
    "threads_with_idle_conns",
)

pytestmark = pytest.mark.skipif(
    not Path("/proc/self/stat").exists(), reason="the benchmark reads /proc (Linux)"
)


@pytest.mark.timeout(120)
def test_a_quick_bench_writes_figures_for_both_servers_and_plots_them(tmp_path: Path) -> None:
    out, png = tmp_path / "out.json", tmp_path / "latency.png"
    argv = [PYTHON, str(BENCH), "--quick", "--json", str(out), "--plot", str(png)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=110, cwd=ROOT, check=False)
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout}\n{done.stderr[-3000:]}"
    data: dict[str, Any] = json.loads(out.read_text())
    assert {"bare", "supervised", "ratios", "meta"} <= data.keys()
    for kind in ("bare", "supervised"):
        for key in POSITIVE:
            value = data[kind][key]
            assert isinstance(value, int | float) and math.isfinite(value) and value > 0, (
                kind,
                key,
            )
        assert math.isfinite(data[kind]["rss_kib_per_conn"])
        assert data[kind]["idle_conns_opened"] == data["meta"]["durations"]["idle_connections"]
    for key in ("conns_per_s", "msgs_per_s", "rtt_p50_us"):
        assert data["ratios"][key] > 0
        assert data["ratios_paired"][key] > 0  # one round: the same as the ratio of medians
        assert data["ratios_paired"][key] == pytest.approx(data["ratios"][key])
    assert data["meta"]["rounds"] == 1 and data["meta"]["cpu_count"] >= 1
    assert data["meta"]["app"] == "supervisor.front.apps:EchoApp"
    assert data["meta"]["log_level"] == "INFO"  # the level the profiles ship
    assert data["bare"]["log_lines_per_conn"] == 0  # bare websockets logs nothing
    assert data["supervised"]["log_lines_per_conn"] == pytest.approx(
        1.0, abs=0.05
    )  # the access line
    assert "ratio" in done.stdout and "supervised" in done.stdout
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
