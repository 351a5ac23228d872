"""``scripts/bench.py``'s summary: medians, their ratio, and the paired ratio of each round.

The summary and tables are ``scripts/_bench_report.py``'s, the slices ``_bench_scenarios.py``'s.
"""

from __future__ import annotations

import tomllib
from types import ModuleType

import pytest

from tests.helpers import SCRIPTS, import_script

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def bench(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    return import_script(monkeypatch, "bench")


@pytest.fixture
def scenarios(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """``scripts/_bench_scenarios.py``: the kinds, the slices and their sums."""
    return import_script(monkeypatch, "_bench_scenarios")


@pytest.fixture
def report(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """``scripts/_bench_report.py``: medians, ratios, tables and verdicts."""
    return import_script(monkeypatch, "_bench_report")


def rounds(*cpu: float) -> list[dict[str, float]]:
    return [{"cpu_ms_per_conn": value, "conns_per_s": 100.0} for value in cpu]


def test_the_ratio_is_of_the_medians_and_the_paired_ratio_is_the_median_of_each_rounds_own(
    report: ModuleType,
) -> None:
    summary = report.summarize({"bare": rounds(1.0, 1.4, 1.1), "supervised": rounds(1.5, 1.5, 1.3)})
    assert summary["bare"]["cpu_ms_per_conn"] == pytest.approx(1.1)
    assert summary["supervised"]["cpu_ms_per_conn"] == pytest.approx(1.5)
    assert summary["ratios"]["cpu_ms_per_conn"] == pytest.approx(1.5 / 1.1)
    assert summary["ratios_paired"]["cpu_ms_per_conn"] == pytest.approx(1.3 / 1.1)  # 1.5, 1.07
    assert summary["ratios_paired"]["conns_per_s"] == pytest.approx(1.0)


def test_a_metric_that_bare_reads_as_zero_gets_no_paired_ratio(report: ModuleType) -> None:
    bare = [{"cpu_ms_per_conn": 0.0}, {"cpu_ms_per_conn": 0.0}]
    summary = report.summarize({"bare": bare, "supervised": rounds(1.0, 1.2)})
    assert "cpu_ms_per_conn" not in summary["ratios_paired"]
    assert "cpu_ms_per_conn" not in summary["ratios"]


def test_the_table_shows_both_ratios(report: ModuleType) -> None:
    summary = report.summarize({"bare": rounds(1.0, 1.4, 1.1), "supervised": rounds(1.5, 1.5, 1.3)})
    line = next(row for row in report.table(summary).splitlines() if "CPU per connection" in row)
    assert "1.36x" in line and "1.18x" in line


def test_sentinel_churn_is_paired_round_by_round_with_the_masters_plain_url(
    scenarios: ModuleType, report: ModuleType
) -> None:
    per_round = {
        "bare": rounds(1.0, 1.0),
        "supervised": rounds(1.0, 1.0),
        scenarios.REDIS_KIND: rounds(1.0, 1.0),
        scenarios.MASTER_KIND: [{"conns_per_s": 100.0}, {"conns_per_s": 50.0}],
        scenarios.SENTINEL_KIND: [{"conns_per_s": 90.0}, {"conns_per_s": 50.0}],
    }
    summary = report.summarize(per_round)
    summary.update(report.redis_ratios(summary, per_round))
    assert summary["ratios_sentinel_redis_paired"]["conns_per_s"] == pytest.approx(0.95)
    assert "0.95x (met)" in report.cluster_verdict(summary)


def test_the_push_verdict_compares_the_added_latency_with_one_redis_round_trip(
    report: ModuleType,
) -> None:
    cluster = {
        "push_local_frame_p50_ms": 1.0, "push_cross_frame_p50_ms": 1.2,
        "push_local_frame_p99_ms": 3.0, "push_cross_frame_p99_ms": 4.0,
        "redis_ping_p50_ms": 0.25, "redis_ping_p99_ms": 0.5,
        "wait_added_p50_ms": 0.05, "wait_unreplicated": 0.0,
    }  # fmt: skip
    verdict = report.cluster_verdict({"cluster": cluster})
    assert "(p50): +0.200 ms to the frame, one round trip 0.250 ms (met)" in verdict
    assert "(p99): +1.000 ms to the frame, one round trip 0.500 ms (NOT met)" in verdict


def test_the_bench_runs_the_supervised_server_at_the_log_level_every_profile_ships(
    bench: ModuleType, scenarios: ModuleType
) -> None:
    profiles = sorted((SCRIPTS.parent / "config").glob("*.toml"))
    assert profiles
    for profile in profiles:
        level = tomllib.loads(profile.read_text())["logging"]["level"]
        assert level == scenarios.SHIPPED_LOG_LEVEL, profile.name
    assert bench.parse_args([]).log_level == scenarios.SHIPPED_LOG_LEVEL


def test_slices_of_one_node_combine_into_its_connections_over_its_time_and_cpu_over_them(
    scenarios: ModuleType,
) -> None:
    first = {"churn_conns": 100.0, "conns_per_s": 50.0, "cpu_ms_per_conn": 1.0,
             "switches_per_conn": 2.0, "churn_errors": 1.0}  # fmt: skip
    second = {"churn_conns": 300.0, "conns_per_s": 100.0, "cpu_ms_per_conn": 2.0,
              "switches_per_conn": 0.0, "churn_errors": 0.0}  # fmt: skip
    metrics, latencies = scenarios.combined([(first, [0.010, 0.030]), (second, [0.020])])
    assert metrics["conns_per_s"] == pytest.approx(400 / 5)  # 100 in 2 s, 300 in 3 s
    assert metrics["cpu_ms_per_conn"] == pytest.approx((100 * 1.0 + 300 * 2.0) / 400)
    assert metrics["switches_per_conn"] == pytest.approx(0.5)
    assert (metrics["churn_conns"], metrics["churn_errors"]) == (400, 1)
    assert metrics["connect_p50_ms"] == pytest.approx(20.0)
    assert latencies == [0.010, 0.030, 0.020]


def test_servers_side_by_side_are_measured_in_abba_order_slice_after_slice(
    scenarios: ModuleType,
) -> None:
    order: list[str] = []

    def measure(kind: str) -> str:
        order.append(kind)
        return kind

    parts = scenarios.interleaved(["bare", "supervised"], measure)
    slices = scenarios.SLICES
    assert order == ["bare", "supervised", "supervised", "bare"] * (slices // 2)
    assert parts == {"bare": ["bare"] * slices, "supervised": ["supervised"] * slices}


def test_a_master_share_is_combined_only_when_every_slice_measured_it(
    scenarios: ModuleType,
) -> None:
    first = {"churn_conns": 100.0, "conns_per_s": 50.0, "cpu_ms_per_conn": 1.0,
             "switches_per_conn": 0.0, "churn_errors": 0.0,
             "master_cpu_ms_per_conn": 0.2}  # fmt: skip
    second = {**first, "master_cpu_ms_per_conn": 0.4, "churn_conns": 300.0}
    metrics, _ = scenarios.combined([(first, [0.01]), (second, [0.01])])
    assert metrics["master_cpu_ms_per_conn"] == pytest.approx((100 * 0.2 + 300 * 0.4) / 400)
    without = {key: value for key, value in first.items() if key != "master_cpu_ms_per_conn"}
    metrics, _ = scenarios.combined([(without, [0.01]), (second, [0.01])])
    assert "master_cpu_ms_per_conn" not in metrics


def test_slices_of_throughput_combine_into_messages_over_time_and_cpu_over_messages(
    scenarios: ModuleType,
) -> None:
    parts = [
        {"messages": 1000.0, "elapsed": 2.0, "cpu": 0.05, "switches": 10.0, "errors": 1.0},
        {"messages": 3000.0, "elapsed": 2.0, "cpu": 0.15, "switches": 30.0, "errors": 0.0},
    ]
    metrics = scenarios.throughput_combined(parts)
    assert metrics["msgs_per_s"] == pytest.approx(1000.0)
    assert metrics["cpu_us_per_msg"] == pytest.approx(50.0)
    assert metrics["switches_per_msg"] == pytest.approx(0.01)
    assert metrics["throughput_errors"] == 1
