"""``scripts/bench``'s figures over the rounds: medians, ratios, tables, verdicts and plots.

:func:`summarize` takes the medians over the rounds and the supervised/bare
ratios, :func:`table` shows them; those of ``--workers``
(:func:`workers_ratios`) and of ``--redis`` (:func:`redis_ratios`) have
tables and verdicts of their own; :func:`plot` draws the latencies' CDFs.
"""

from __future__ import annotations

import importlib.metadata
import math
import statistics
from collections.abc import Sequence
from pathlib import Path

from _bench_scenarios import (  # scripts/ is on sys.path when run as a script
    MASTER_KIND,
    REDIS_KIND,
    SENTINEL_KIND,
    WORKERS_KIND,
)

__all__ = [
    "METRICS",
    "cluster_table",
    "cluster_verdict",
    "fmt",
    "matplotlib_available",
    "plot",
    "print_redis",
    "redis_ratios",
    "redis_table",
    "redis_verdict",
    "sentinel_table",
    "summarize",
    "table",
    "websockets_version",
    "workers_ratios",
    "workers_table",
    "workers_verdict",
]


def _grid(rows: Sequence[Sequence[str]]) -> str:
    """A markdown table of ``rows`` (the first is the header)."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for index, row in enumerate(rows):
        cells = [row[0].ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)
        ]
        lines.append("| " + " | ".join(cells) + " |")
        if index == 0:
            lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


# (key, label, the better direction); the table's rows, in order
METRICS: list[tuple[str, str, str]] = [
    ("conns_per_s", "churn: connections/s", "higher"),
    ("connect_p50_ms", "churn: connect->welcome p50 (ms)", "lower"),
    ("connect_p99_ms", "churn: connect->welcome p99 (ms)", "lower"),
    ("cpu_ms_per_conn", "churn: server CPU per connection (ms)", "lower"),
    ("switches_per_conn", "churn: server context switches per connection", "lower"),
    ("log_lines_per_conn", "churn: server log lines per connection", "lower"),
    ("msgs_per_s", "throughput: echo round trips/s", "higher"),
    ("cpu_us_per_msg", "throughput: server CPU per message (us)", "lower"),
    ("switches_per_msg", "throughput: server context switches per message", "lower"),
    ("rtt_p50_us", "idle: echo round trip p50 (us)", "lower"),
    ("rtt_p99_us", "idle: echo round trip p99 (us)", "lower"),
    ("rss_kib_per_conn", "memory: server RSS per idle connection (KiB)", "lower"),
    ("threads_with_idle_conns", "memory: server threads with the idle connections", "lower"),
    ("rss_idle_mib", "memory: server RSS at start (MiB)", "lower"),
    ("churn_errors", "churn: client errors", "lower"),
    ("throughput_errors", "throughput: client errors", "lower"),
]


def fmt(value: float) -> str:
    """A figure as the tables and the progress lines show it."""
    if math.isnan(value):
        return "n/a"
    if value == int(value):
        return f"{value:,.0f}"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def summarize(per_round: dict[str, list[dict[str, float]]]) -> dict[str, dict[str, float]]:
    """Medians over rounds, and supervised/bare ratios two ways.

    ``ratios``: the supervised median over the bare median. ``ratios_paired``:
    the median of each round's own ratio, the servers of a round having run
    side by side; when the host's speed drifts between rounds, the two
    medians can come from rounds far apart, and the paired ratio cancels it.
    """
    medians: dict[str, dict[str, float]] = {}
    for kind, rounds in per_round.items():
        medians[kind] = {
            key: statistics.median(r[key] for r in rounds) for key in rounds[0] if rounds
        }
    ratios: dict[str, float] = {}
    paired: dict[str, float] = {}
    for key, _, _ in METRICS:
        bare, supervised = medians["bare"].get(key), medians["supervised"].get(key)
        if bare and supervised is not None:
            ratios[key] = supervised / bare
        pairs = [
            s[key] / b[key]
            for b, s in zip(per_round["bare"], per_round["supervised"], strict=False)
            if b.get(key) and key in s
        ]
        if pairs:
            paired[key] = statistics.median(pairs)
    return {**medians, "ratios": ratios, "ratios_paired": paired}


def table(summary: dict[str, dict[str, float]]) -> str:
    rows: list[tuple[str, ...]] = [
        ("metric", "bare", "supervised", "ratio s/b", "paired", "better")
    ]
    for key, label, better in METRICS:
        bare, sup = summary["bare"].get(key), summary["supervised"].get(key)
        if bare is None or sup is None:
            continue
        ratios = (summary["ratios"].get(key), summary.get("ratios_paired", {}).get(key))
        shown = ["n/a" if ratio is None else f"{ratio:.2f}x" for ratio in ratios]
        rows.append((label, fmt(bare), fmt(sup), *shown, better))
    return _grid(rows)


def matplotlib_available() -> bool:
    try:
        import matplotlib  # type: ignore[import-not-found, unused-ignore]  # noqa: F401, PLC0415
    except ImportError:
        return False
    return True


def plot(path: Path, samples: dict[str, dict[str, list[float]]]) -> None:
    """CDFs of connect latency and idle round trip, bare vs supervised."""
    import matplotlib  # type: ignore[import-not-found, unused-ignore]  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # type: ignore[import-not-found, unused-ignore]  # noqa: PLC0415

    figure, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    panels = [("connect_ms", "churn: connect -> welcome (ms)"), ("rtt_us", "idle echo RTT (us)")]
    for axis, (key, title) in zip(axes, panels, strict=True):
        for kind in ("bare", "supervised"):
            values = sorted(samples[kind].get(key, []))
            if values:
                fractions = [(i + 1) / len(values) for i in range(len(values))]
                axis.plot(values, fractions, label=kind)
        axis.set_xscale("log")
        axis.set_title(title)
        axis.set_ylabel("fraction <= x")
        axis.grid(True, which="both", alpha=0.3)
        axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def websockets_version() -> str:
    try:
        return importlib.metadata.version("websockets")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover
        return "not installed"


# --- several worker processes (--workers N) -------------------------------------------

WORKERS_TARGET = 1.05  # server CPU per connection, N workers against one (issue #23)


def workers_ratios(per_round: dict[str, list[dict[str, float]]]) -> dict[str, dict[str, float]]:
    """N workers against one process: the ratio of the medians, and the median paired ratio."""
    one, many = per_round["supervised"], per_round[WORKERS_KIND]
    ratios: dict[str, float] = {}
    paired: dict[str, float] = {}
    for key, _, _ in METRICS:
        base = statistics.median(r[key] for r in one) if one and key in one[0] else None
        value = statistics.median(r[key] for r in many) if many and key in many[0] else None
        if base and value is not None:
            ratios[key] = value / base
        pairs = [
            m[key] / o[key] for o, m in zip(one, many, strict=False) if o.get(key) and key in m
        ]
        if pairs:
            paired[key] = statistics.median(pairs)
    return {"ratios_workers": ratios, "ratios_workers_paired": paired}


def workers_table(summary: dict[str, dict[str, float]], workers: int) -> str:
    rows: list[tuple[str, ...]] = [
        ("metric", "1 process", f"{workers} workers", "ratio w/1", "paired", "better")
    ]
    for key, label, better in METRICS:
        one, many = summary["supervised"].get(key), summary[WORKERS_KIND].get(key)
        if one is None or many is None:
            continue
        ratios = (summary["ratios_workers"].get(key), summary["ratios_workers_paired"].get(key))
        shown = ["n/a" if ratio is None else f"{ratio:.2f}x" for ratio in ratios]
        rows.append((label, fmt(one), fmt(many), *shown, better))
    return _grid(rows)


def workers_verdict(summary: dict[str, dict[str, float]], workers: int) -> str:
    ratio = summary["ratios_workers"].get("cpu_ms_per_conn", math.nan)
    paired = summary["ratios_workers_paired"].get("cpu_ms_per_conn", math.nan)
    met = "met" if ratio <= WORKERS_TARGET else "NOT met"
    master = summary[WORKERS_KIND].get("master_cpu_ms_per_conn", math.nan)
    return (
        f"target: server CPU per connection with {workers} workers <= {WORKERS_TARGET}x one "
        f"process: {ratio:.2f}x (paired {paired:.2f}x) ({met}); the master's own share "
        f"{master:.2f} ms per connection"
    )


# --- the Redis-backed run (--redis) ---------------------------------------------------

# the rows of METRICS that the Redis table compares, and the Redis run's own rows
REDIS_COMPARED = (
    "conns_per_s",
    "connect_p50_ms",
    "connect_p99_ms",
    "cpu_ms_per_conn",
    "churn_errors",
)
REDIS_ONLY: list[tuple[str, str]] = [
    ("redis_acquire_per_conn", "redis: ACQUIRE calls per admission (round trips)"),
    ("redis_release_per_conn", "redis: RELEASE calls per connection"),
    ("redis_requests_per_conn", "redis: every daemon request per connection"),
    ("redis_cpu_ms_per_conn", "redis: redis-server CPU per connection (ms)"),
]


def print_redis(summary: dict[str, dict[str, float]]) -> None:
    redis_run = summary[REDIS_KIND]
    print()
    print(
        "ws-supervisor with the Redis ledger (churn), median; a redis-server on loopback; "
        f"{redis_run.get('churn_conns', 0):,.0f} connections in the median round"
    )
    print(redis_table(summary))
    print("memory = ws-supervisor with the in-memory ledger (the table above).")
    print(redis_verdict(summary))
    if summary.get(SENTINEL_KIND):
        print()
        print(
            "the same churn on a master with a replica and three sentinels: "
            "the master's URL, or the sentinels'"
        )
        print(sentinel_table(summary))
    if summary.get("cluster"):
        print()
        print(cluster_table(summary["cluster"]))
    print(cluster_verdict(summary))


def redis_ratios(
    summary: dict[str, dict[str, float]], per_round: dict[str, list[dict[str, float]]]
) -> dict[str, dict[str, float]]:
    """redis/bare and redis/memory ratios of the churn metrics; sentinel/master URL, paired."""
    found: dict[str, dict[str, float]] = {"ratios_redis_bare": {}, "ratios_redis_memory": {}}
    redis_run = summary.get(REDIS_KIND, {})
    for key in REDIS_COMPARED:
        for name, base in (("ratios_redis_bare", "bare"), ("ratios_redis_memory", "supervised")):
            value, reference = redis_run.get(key), summary[base].get(key)
            if reference and value is not None:
                found[name][key] = value / reference
    found["ratios_sentinel_redis_paired"] = {}
    for key in REDIS_COMPARED:
        pairs = [
            s[key] / r[key]
            for r, s in zip(
                per_round.get(MASTER_KIND, []), per_round.get(SENTINEL_KIND, []), strict=False
            )
            if r.get(key) and key in s
        ]
        if pairs:
            found["ratios_sentinel_redis_paired"][key] = statistics.median(pairs)
    return found


def sentinel_table(summary: dict[str, dict[str, float]]) -> str:
    rows: list[tuple[str, ...]] = [("metric", "master URL", "sentinel", "paired s/m", "better")]
    for key, label, better in (row for row in METRICS if row[0] in REDIS_COMPARED):
        paired = summary["ratios_sentinel_redis_paired"].get(key)
        rows.append(
            (
                label,
                fmt(summary[MASTER_KIND].get(key, math.nan)),
                fmt(summary[SENTINEL_KIND].get(key, math.nan)),
                "n/a" if paired is None else f"{paired:.2f}x",
                better,
            )
        )
    return _grid(rows)


def cluster_table(cluster: dict[str, float]) -> str:
    """Pushes' latencies (ms) and WAIT's cost, from :func:`cluster_extras`."""
    rows: list[tuple[str, ...]] = [("ms", "p50", "p99")]
    for key, label in (
        ("push_local_frame", "local push: request -> frame at the client"),
        ("push_cross_frame", "cross-node push: request -> frame at the client"),
        ("push_local_answer", "local push: request -> answer"),
        ("push_cross_answer", "cross-node push: request -> answer (the other node confirmed)"),
        ("redis_ping", "Redis PING round trip (reference)"),
        ("wait_plain", "one admission (ACQUIRE) per round trip"),
        ("wait_waited", "the same, with WAIT 1 100 in its pipeline"),
    ):
        p50, p99 = cluster.get(f"{key}_p50_ms", math.nan), cluster.get(f"{key}_p99_ms", math.nan)
        rows.append((label, f"{p50:.3f}", f"{p99:.3f}"))
    return _grid(rows)


def cluster_verdict(summary: dict[str, dict[str, float]]) -> str:
    """The targets of issue #25, met or not."""
    paired = summary.get("ratios_sentinel_redis_paired", {}).get("conns_per_s", math.nan)
    lines = [
        f"target: churn through Sentinel >= 0.95x the master's plain URL (paired): {paired:.2f}x "
        f"({'met' if paired >= 0.95 else 'NOT met'})",
    ]
    cluster = summary.get("cluster", {})
    if cluster:
        ping = cluster["redis_ping_p50_ms"]
        for pct in ("p50", "p99"):
            added = cluster[f"push_cross_frame_{pct}_ms"] - cluster[f"push_local_frame_{pct}_ms"]
            bound = cluster[f"redis_ping_{pct}_ms"]
            lines.append(
                f"target: a cross-node push adds <= one Redis round trip ({pct}): "
                f"{added:+.3f} ms to the frame, one round trip {bound:.3f} ms "
                f"({'met' if added <= bound else 'NOT met'})"
            )
        lines.append(
            f"WAIT 1 100 adds {cluster['wait_added_p50_ms']:.3f} ms (paired p50) to an admission"
            f" (Redis PING {ping:.3f} ms); not replicated in time: "
            f"{cluster['wait_unreplicated']:.0f}"
        )
    return "\n".join(lines)


def redis_table(summary: dict[str, dict[str, float]]) -> str:
    def ratio(name: str, key: str) -> str:
        value = summary[name].get(key)
        return "n/a" if value is None else f"{value:.2f}x"

    header = ("metric", "bare", "memory", "redis", "redis/bare", "redis/memory", "better")
    rows: list[tuple[str, ...]] = [header]
    for key, label, better in (row for row in METRICS if row[0] in REDIS_COMPARED):
        cells = [fmt(summary[kind].get(key, math.nan)) for kind in ("bare", "supervised")]
        cells.append(fmt(summary[REDIS_KIND].get(key, math.nan)))
        ratios = (ratio("ratios_redis_bare", key), ratio("ratios_redis_memory", key))
        rows.append((label, *cells, *ratios, better))
    for key, label in REDIS_ONLY:
        rows.append((label, "", "", fmt(summary[REDIS_KIND].get(key, math.nan)), "", "", "lower"))
    return _grid(rows)


def redis_verdict(summary: dict[str, dict[str, float]]) -> str:
    """The targets of issue #6, met or not."""
    trips = summary[REDIS_KIND].get("redis_acquire_per_conn", math.nan)
    churn = summary["ratios_redis_bare"].get("conns_per_s", math.nan)
    lines = [
        f"target: admission <= 1 Redis round trip per connection: {trips:.2f} "
        f"({'met' if trips <= 1.0 else 'NOT met'})",
        f"target: churn >= 0.7x bare websockets: {churn:.2f}x "
        f"({'met' if churn >= 0.7 else 'NOT met'})",
    ]
    if summary[REDIS_KIND].get("redis_log_full"):
        lines.append("warning: the Redis slow log overflowed; the command counts are low")
    return "\n".join(lines)
