"""``scripts/bench.py --quick`` runs end to end and writes its JSON (the tool works; no speed is
asserted)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import run_script

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
    done = run_script("bench", "--quick", "--json", str(out), "--plot", str(png), timeout=110)
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


@pytest.mark.timeout(240)
def test_a_quick_bench_with_workers_compares_them_with_one_process(tmp_path: Path) -> None:
    out = tmp_path / "out.json"
    args = ["--quick", "--workers", "2", "--duration", "1", "--connections", "60"]
    done = run_script("bench", *args, "--json", str(out), timeout=230)
    data: dict[str, Any] = json.loads(out.read_text())
    workers = data["supervised_workers"]
    for key in POSITIVE:
        assert math.isfinite(workers[key]) and workers[key] > 0, key
    assert workers["threads_with_idle_conns"] > data["supervised"]["threads_with_idle_conns"]
    assert data["ratios_workers"]["cpu_ms_per_conn"] > 0
    assert data["meta"]["workers"] == 2
    assert "serve --workers 2 against one process" in done.stdout
    assert "target: server CPU per connection with 2 workers <= 1.05x one process" in done.stdout
