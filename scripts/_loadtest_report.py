"""``scripts/loadtest``'s verdict: the leak checks after the run, and the report.

:func:`check_leaks` waits, after the last client process is gone, for
every slot to be free within the grace (keepalive deadline + 2 s) and for
the daemon's threads to come back (:class:`LeakCheck`);
:func:`build_report` adds up what the clients, the :class:`Sampler` and
the daemon's metrics said (the release latency's quantiles from its
histogram: :func:`release_buckets`, :func:`histogram_quantile`) and lists
the failures; :func:`print_report` shows it.
"""

from __future__ import annotations

import math
import shlex
import sys
from dataclasses import dataclass
from typing import Any

from _loadtest_procs import Clients, Options  # scripts/ is on sys.path when run as a script
from _loadtest_sampling import FD_SETTLE, Metrics, Sampler, labelled, metric, wait_clean
from _toolkit import percentile

__all__ = [
    "THREAD_ALLOWANCE",
    "LeakCheck",
    "build_report",
    "check_leaks",
    "histogram_quantile",
    "print_report",
    "release_buckets",
]

THREAD_ALLOWANCE = 10


@dataclass
class LeakCheck:
    """The daemon after the last client: at the grace deadline, then after the settle time."""

    grace: float
    slots_ok: bool
    slots_after: float
    slots_state: dict[str, Any] | None
    slots_metrics: Metrics | None
    threads_ok: bool
    threads_after: float
    final_state: dict[str, Any] | None
    final_metrics: Metrics | None


def check_leaks(admin: str, options: Options, threads_start: int) -> LeakCheck:
    """Slots and managers must be 0 within the grace; threads back within the settle time."""
    grace = options.keepalive + 2.0
    slots_ok, slots_after, at_grace = wait_clean(
        admin,
        grace,
        lambda state, samples: (
            state["root"]["slots_held"] == 0
            and metric(samples, "ws_supervisor_managers_active") == 0
        ),
    )
    # wait for every thread to be back (for the report); the verdict allows THREAD_ALLOWANCE
    _, threads_after, final = wait_clean(
        admin, options.settle, lambda state, _: state["root"]["threads"] <= threads_start
    )
    final_threads = final[0]["root"]["threads"] if final else None
    threads_ok = final_threads is not None and final_threads <= threads_start + THREAD_ALLOWANCE
    at_grace, final = at_grace or (None, None), final or at_grace or (None, None)
    return LeakCheck(
        grace,
        slots_ok,
        slots_after,
        at_grace[0],
        at_grace[1],
        threads_ok,
        threads_after,
        final[0],
        final[1],
    )


def histogram_quantile(q: float, buckets: dict[float, float]) -> float:
    """Prometheus-style quantile from cumulative buckets {upper bound: count}; NaN if empty."""
    bounds = sorted(buckets)
    if not bounds or buckets[bounds[-1]] <= 0:
        return float("nan")
    rank = q * buckets[bounds[-1]]
    lower, below = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if math.isinf(bound):
                return lower  # beyond the last finite bucket: its bound is all we know
            if count == below:
                return bound
            return lower + (bound - lower) * (rank - below) / (count - below)
        lower, below = bound, count
    return lower


def release_buckets(samples: Metrics) -> dict[float, float]:
    found = labelled(samples, "ws_supervisor_release_latency_seconds_bucket", "le")
    return {float(le): value for le, value in found.items()}


def _ms(seconds: float) -> float | None:
    return None if math.isnan(seconds) else round(seconds * 1000, 3)


def build_report(
    options: Options,
    clients: Clients,
    *,
    sampler: Sampler,
    start_metrics: Metrics,
    leaks: LeakCheck,
    threads_start: int,
    fds: tuple[int | None, int | None],
) -> dict[str, Any]:
    final_metrics = leaks.final_metrics or {}
    counts = clients.counts
    errors = {k.removeprefix("error_"): v for k, v in counts.items() if k.startswith("error_")}
    at_quota = counts["rejected_at_quota"]
    attempts = counts["admitted"] + at_quota + counts["rejected_below_quota"] + sum(errors.values())
    counted = attempts - at_quota
    start_buckets, end_buckets = release_buckets(start_metrics), release_buckets(final_metrics)
    buckets = {le: end_buckets[le] - start_buckets.get(le, 0.0) for le in end_buckets}
    name = "ws_supervisor_thread_id_mismatches_total"
    mismatches_server = metric(final_metrics, name) - metric(start_metrics, name)
    name = "ws_supervisor_admissions_total"
    before = labelled(start_metrics, name, "result")
    server_admissions = {
        result: value - before.get(result, 0.0)
        for result, value in labelled(final_metrics, name, "result").items()
        if value - before.get(result, 0.0) > 0
    }
    grace_root = (leaks.slots_state or {}).get("root", {})
    grace_slots = grace_root.get("slots_held")
    grace_managers = (
        None
        if leaks.slots_metrics is None
        else metric(leaks.slots_metrics, "ws_supervisor_managers_active")
    )
    final_threads = (leaks.final_state or {}).get("root", {}).get("threads")
    failures: list[str] = []
    if not leaks.slots_ok:
        failures.append(
            f"leak: slots_held={grace_slots} managers_active={grace_managers} "
            f"{leaks.grace:.1f}s after the last client was gone"
        )
    if not leaks.threads_ok:
        failures.append(
            f"leak: threads {final_threads} > start {threads_start} + {THREAD_ALLOWANCE} "
            f"{leaks.grace + options.settle:.1f}s after the last client was gone"
        )
    if fds[0] is not None and fds[1] is not None and fds[1] > fds[0]:
        failures.append(
            f"leak: open files {fds[1]} > start {fds[0]} {FD_SETTLE:g}s after the other checks"
        )
    if sampler.breach_count:
        failures.append(f"quota breach in {sampler.breach_count} sample(s): {sampler.breaches}")
    if mismatches_server:
        failures.append(f"ws_supervisor_thread_id_mismatches_total rose by {mismatches_server:.0f}")
    for kind in ("welcome_mismatch", "echo_mismatch"):
        if counts[kind]:
            failures.append(f"{counts[kind]} {kind.replace('_', ' ')}(es) seen by clients")
    if leaks.final_state is None or not final_metrics:
        failures.append("the daemon could not be read at the end")
    return {
        "ok": not failures,
        "failures": failures,
        "config": {
            "users": options.users,
            "per_user": options.per_user,
            "churn_per_s": options.churn,
            "kill_pct": options.kill_pct,
            "freeze_pct": options.freeze_pct,
            "procs": clients.slots,
            "duration_s": options.duration,
            "spawn": options.spawn,
            "seed": options.seed,
            "command": shlex.join(sys.argv),
        },
        "processes": {
            "started": clients.started,
            "killed": clients.killed,
            "frozen": clients.frozen,
        },
        "connect_ms": {
            "p50": _ms(percentile(clients.latencies, 50)),
            "p99": _ms(percentile(clients.latencies, 99)),
            "n": len(clients.latencies),
        },
        "admissions": {
            "attempts": attempts,
            "admitted": counts["admitted"],
            "rejected_at_quota": at_quota,
            "rejected_below_quota": counts["rejected_below_quota"],
            "errors": errors,
            "success_rate": round(counts["admitted"] / counted, 4) if counted else None,
        },
        "server_admissions": server_admissions,
        "frames": counts["frames"],
        "close_codes": dict(sorted(clients.codes.items())),
        "slots": {
            "peak_slots_held": sampler.peak_slots,
            "peak_managers_active": sampler.peak_managers,
            "final_slots_held": grace_slots,
            "final_managers_active": grace_managers,
            "free_after_s": round(leaks.slots_after, 2),
        },
        "threads": {
            "start": threads_start,
            "peak": sampler.peak_threads,
            "final": final_threads,
            "back_after_s": round(leaks.threads_after, 2),
        },
        "fds": None
        if fds[0] is None
        else {"start": fds[0], "peak": max(sampler.peak_fds, fds[0]), "final": fds[1]},
        "release_latency_ms": {
            "p50": _ms(histogram_quantile(0.5, buckets)),
            "p99": _ms(histogram_quantile(0.99, buckets)),
            "n": int(max(buckets.values(), default=0)),
        },
        "quota_breaches": sampler.breach_count,
        "mismatches": {
            "server": int(mismatches_server),
            "welcome": counts["welcome_mismatch"],
            "echo": counts["echo_mismatch"],
        },
        "samples": {"taken": sampler.samples, "failed": sampler.failures},
    }


def print_report(report: dict[str, Any]) -> None:
    config, processes = report["config"], report["processes"]
    admissions, slots, threads = report["admissions"], report["slots"], report["threads"]
    connect, release = report["connect_ms"], report["release_latency_ms"]
    rate = admissions["success_rate"]
    fds = report["fds"]
    lines = [
        f"ws-supervisor load test: {config['duration_s']:.0f}s, {config['users']} users x "
        f"{config['per_user']}, churn {config['churn_per_s']:g}/s, {config['procs']} client procs "
        f"(started {processes['started']}, killed {processes['killed']}, "
        f"frozen {processes['frozen']})",
        f"connect->welcome  p50 {connect['p50']} ms  p99 {connect['p99']} ms  (n={connect['n']})",
        f"admission         {admissions['admitted']}/{admissions['attempts']} admitted; "
        f"429 at quota {admissions['rejected_at_quota']} (not failures), "
        f"429 below quota {admissions['rejected_below_quota']}, errors {admissions['errors']}; "
        f"success {'n/a' if rate is None else f'{rate:.1%}'} of non-quota attempts",
        f"server admissions {report['server_admissions']}",
        f"frames            {report['frames']} echo/ping round trips; "
        f"close codes {report['close_codes']}",
        f"slots             peak {slots['peak_slots_held']} (slots_held), peak managers_active "
        f"{slots['peak_managers_active']:.0f}; final {slots['final_slots_held']} / "
        f"{slots['final_managers_active']} (after {slots['free_after_s']}s)",
        f"threads           start {threads['start']}, peak {threads['peak']}, final "
        f"{threads['final']} (after {threads['back_after_s']}s more)",
        "fds               "
        + (
            "n/a (no --pid)"
            if fds is None
            else f"start {fds['start']}, peak {fds['peak']}, final {fds['final']}"
        ),
        f"close->free       p50 {release['p50']} ms  p99 {release['p99']} ms  "
        f"(ws_supervisor_release_latency_seconds, n={release['n']}, bucket interpolation)",
        f"quota breaches    {report['quota_breaches']}",
        f"mismatches        server {report['mismatches']['server']}, welcome ids "
        f"{report['mismatches']['welcome']}, echo {report['mismatches']['echo']}",
    ]
    if "daemon_exit_code" in report:
        lines.append(f"daemon exit code  {report['daemon_exit_code']}")
    lines.append("verdict           " + ("OK" if report["ok"] else "FAIL"))
    lines.extend(f"  - {failure}" for failure in report["failures"])
    if report.get("daemon_log_tail"):
        lines.append("daemon log (tail):\n" + report["daemon_log_tail"])
    print("\n".join(lines))
