"""The alert rules, their promtool tests and the Grafana dashboard, proven on a real Prometheus.

promtool and prometheus are Debian's (package ``prometheus``; ``scripts/test``
installs it when missing). The rules are checked and unit-tested with
promtool; then a throwaway Prometheus (loopback, an ephemeral port, a 1 s
scrape and evaluation, the rules loaded) scrapes two real daemon processes:
one under a short, bounded load, on which every dashboard query must return
data through Prometheus' HTTP API, and one with the test-only fault
``[faults] close_under_foreign_id``, on which a real thread_id mismatch must
show as the counter at 1, ``/readyz`` 503 and the alert firing. Grafana
itself is not run (it is not in Debian); the dashboard's queries are.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import re
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from tests.integration.harness import ROOT, DaemonProcess

RULES = ROOT / "config" / "prometheus" / "ws-supervisor.rules.yml"
RULE_TESTS = ROOT / "config" / "prometheus" / "ws-supervisor.rules.test.yml"
DASHBOARD = ROOT / "config" / "grafana" / "ws-supervisor.json"
OPERATIONS = ROOT / "docs" / "OPERATIONS.md"
CI_PROFILE = ROOT / "config" / "ci.toml"
JOB = "ws-supervisor"  # the scrape job the rules expect (WsSupervisorDown)


def tool(name: str) -> str:
    found = shutil.which(name)
    assert found, f"{name} is missing: install Debian's 'prometheus' package (scripts/test does)"
    return found


def promtool(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool("promtool"), *args], capture_output=True, text=True, timeout=60, cwd=cwd
    )


# --- the rules, checked and unit-tested with promtool ---------------------------------------


def alerts_in(rules: str) -> list[str]:
    return re.findall(r"^\s*- alert: (\w+)\s*$", rules, re.MULTILINE)


def cases_of(tests: str) -> dict[str, set[str]]:
    """For each alert, which kinds of case its tests hold: "fires" and/or "silent"."""
    found: dict[str, set[str]] = {}
    for case in re.split(r"^\s*- eval_time:", tests, flags=re.MULTILINE)[1:]:
        name = re.search(r"alertname: (\w+)", case)
        assert name, case
        silent = re.search(r"exp_alerts: \[\]", case) or "exp_alerts" not in case
        found.setdefault(name.group(1), set()).add("silent" if silent else "fires")
    return found


def test_promtool_finds_the_rules_valid_with_every_lint() -> None:
    checked = promtool("check", "rules", "--lint=all", "--lint-fatal", str(RULES))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(alerts_in(RULES.read_text()))} rules found" in checked.stdout


def test_the_rules_promtool_unit_tests_pass() -> None:
    tested = promtool("test", "rules", str(RULE_TESTS))
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


def test_every_alert_has_a_case_where_it_fires_and_one_where_it_stays_silent() -> None:
    alerts = alerts_in(RULES.read_text())
    cases = cases_of(RULE_TESTS.read_text())
    assert len(alerts) == 14 and len(set(alerts)) == len(alerts)
    assert {alert: cases.get(alert, set()) for alert in alerts} == {
        alert: {"fires", "silent"} for alert in alerts
    }
    assert set(cases) <= set(alerts)


def test_every_alert_has_a_summary_a_description_and_a_runbook_in_operations_md() -> None:
    rules = RULES.read_text()
    headings = set(re.findall(r"^## (WsSupervisor\w+)$", OPERATIONS.read_text(), re.MULTILINE))
    for block in re.split(r"^\s*- alert: ", rules, flags=re.MULTILINE)[1:]:
        name = block.split()[0]
        assert "summary:" in block and "description:" in block, name
        assert f'runbook_url: "docs/OPERATIONS.md#{name.lower()}"' in block, name
        assert name in headings, f"docs/OPERATIONS.md has no '## {name}'"


@pytest.mark.parametrize(
    ("original", "broken"),
    [
        (
            "(process_open_fds / process_max_fds) > 0.8",
            "(process_open_fds / process_max_fds) > 0.9",
        ),
        (
            "increase(ws_supervisor_restarts_total[10m]) > 5",
            "increase(ws_supervisor_restarts_total[10m]) > 50",
        ),
        (
            'ws_supervisor_ready{trigger="success_rate"} == 0',
            'ws_supervisor_ready{trigger="draining"} == 0',
        ),
        ("ws_supervisor_node_level == 3", "ws_supervisor_node_level >= 2"),
    ],
    ids=["fd threshold", "restart threshold", "wrong trigger", "wrong level"],
)
def test_the_unit_tests_fail_when_a_rule_is_broken(original: str, broken: str) -> None:
    rules = RULES.read_text()
    assert original in rules
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / RULES.name).write_text(rules.replace(original, broken))
        (Path(folder) / RULE_TESTS.name).write_text(RULE_TESTS.read_text())
        tested = promtool("test", "rules", RULE_TESTS.name, cwd=Path(folder))
    assert tested.returncode != 0
    assert "FAILED" in tested.stdout + tested.stderr


def test_the_daemon_s_exposition_passes_promtool_s_metrics_lint() -> None:
    from supervisor.admin.metrics import MetricsObserver  # noqa: PLC0415 - only this test

    text = MetricsObserver().exposition().decode()
    checked = subprocess.run(
        [tool("promtool"), "check", "metrics"], input=text, capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


# --- a real Prometheus scraping real daemons ------------------------------------------------


@attrs.define
class Stack:
    """A Prometheus scraping two daemons: ``loaded`` (the dashboard's) and ``faulty``."""

    prometheus: str
    loaded: DaemonProcess
    faulty: DaemonProcess

    def instance(self, daemon: DaemonProcess) -> str:
        return f"127.0.0.1:{daemon.admin_port}"


def api(base: str, path: str, **params: str) -> Any:
    query = f"?{urllib.parse.urlencode(params)}" if params else ""
    with urllib.request.urlopen(f"{base}{path}{query}", timeout=5) as answer:
        body = json.load(answer)
    assert body["status"] == "success", body
    return body["data"]


def start_prometheus(folder: Path, targets: list[str]) -> tuple[subprocess.Popen[bytes], str]:
    """Prometheus on loopback, an ephemeral port (read from its log), 1 s scrape and evaluation."""
    config = folder / "prometheus.yml"
    listed = ", ".join(f"'{target}'" for target in targets)
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        f"rule_files: ['{RULES}']\n"
        f"scrape_configs: [{{job_name: {JOB}, static_configs: [{{targets: [{listed}]}}]}}]\n"
    )
    log = folder / "prometheus.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                tool("prometheus"),
                f"--config.file={config}",
                f"--storage.tsdb.path={folder / 'data'}",
                "--web.listen-address=127.0.0.1:0",
                "--log.level=info",
            ],
            stdout=subprocess.DEVNULL,
            stderr=out,
        )
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        found = re.search(r'msg="Listening on" address=127\.0\.0\.1:(\d+)', log.read_text())
        if found:
            return process, f"http://127.0.0.1:{found.group(1)}"
        if process.poll() is not None:
            break
        time.sleep(0.05)
    process.kill()
    process.wait(10)
    raise AssertionError("prometheus did not start: " + log.read_text()[-2000:])


def daemon(env: dict[str, str]) -> DaemonProcess:
    return DaemonProcess(CI_PROFILE, {"WS_SUPERVISOR_LOGGING_LEVEL": "WARNING", **env})


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    """Both daemons and the Prometheus, started together; every process stopped after."""
    loaded = daemon({"WS_SUPERVISOR_QUOTA_NODE_MAX_MANAGERS": "12"})
    faulty = daemon({"WS_SUPERVISOR_FAULTS_CLOSE_UNDER_FOREIGN_ID": "true"})
    prometheus: subprocess.Popen[bytes] | None = None
    with tempfile.TemporaryDirectory(prefix="ws-supervisor-prometheus-") as folder:
        try:
            targets = [f"127.0.0.1:{d.admin_port}" for d in (loaded, faulty)]
            prometheus, base = start_prometheus(Path(folder), targets)
            loaded.wait_ready()
            faulty.wait_ready()
            wait_until_scraped(base, len(targets))
            yield Stack(base, loaded, faulty)
        finally:
            if prometheus is not None:
                prometheus.terminate()
                prometheus.wait(10)
            for process in (loaded, faulty):
                process.signal(signal.SIGTERM)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(20)
                process.kill()


def wait_until_scraped(base: str, targets: int, timeout: float = 30.0) -> None:
    """Every target up (the first scrape comes ~5-6 s after Prometheus starts)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        up = api(base, "/api/v1/query", query=f'up{{job="{JOB}"}} == 1')["result"]
        if len(up) == targets:
            return
        time.sleep(0.2)
    raise AssertionError(f"not every target scraped within {timeout}s")


# the load: short, bounded, on loopback; every kind of answer and close the panels show


async def load(port: int) -> None:
    base = f"ws://127.0.0.1:{port}/ws"

    async def refused(url: str) -> int:
        with pytest.raises(InvalidStatus) as caught:
            ws = await connect(url, open_timeout=5)
            await ws.close()
        return caught.value.response.status_code

    async def opened(user: str) -> ClientConnection:
        ws = await connect(f"{base}?user_id={user}", open_timeout=5)
        await asyncio.wait_for(ws.recv(), 5)  # the welcome
        return ws

    # one close first, then two scrapes: the per-reason cleanup durations are the one labelled
    # series not created at start-up, and rate() sees only increases after a series' first sample
    await (await opened("warmup")).close()
    await asyncio.sleep(2.5)
    for round_ in range(6):  # churn: open, echo, close (1000)
        clients = [await opened(f"churn{n}") for n in range(5)]
        for ws in clients:
            await ws.send(json.dumps({"type": "echo", "data": round_}))
            await asyncio.wait_for(ws.recv(), 5)
            await ws.close()
    dropped = await opened("dropper")
    dropped.transport.abort()  # no close frame: 1006
    assert await refused(f"ws://127.0.0.1:{port}/elsewhere") == 404
    assert await refused(base) == 401  # no user id
    assert await refused(f"{base}?user_id=a&thread_id=bad:id") == 400
    held = [await opened("quota") for _ in range(5)]  # the ci profile's quota: 5
    assert await refused(f"{base}?user_id=quota") == 429
    held += [await opened("big") for _ in range(5)]
    held.append(await opened("mid"))  # 11 of the node's 12: emergency
    assert await refused(f"{base}?user_id=newcomer") == 503  # a new user, at emergency
    held.append(await opened("mid"))  # a known user takes the last slot
    assert await refused(f"{base}?user_id=mid") == 503  # the node cap
    for ws in held:
        await ws.close()


def substitute(expr: str, variables: dict[str, str]) -> str:
    """Grafana's variables, as Grafana would fill them for a 1 s scrape datasource."""
    expr = expr.replace("$__rate_interval", "1m")
    for name, value in variables.items():
        expr = expr.replace(f"${{{name}}}", value).replace(f"${name}", value)
    assert "$" not in expr, expr
    return expr


def dashboard_queries() -> list[tuple[str, str]]:
    """(panel title, expr) for every target of every panel, rows' panels included."""
    found: list[tuple[str, str]] = []

    def walk(panels: list[dict[str, Any]]) -> None:
        for panel in panels:
            found.extend((panel["title"], t["expr"]) for t in panel.get("targets", []))
            walk(panel.get("panels", []))

    walk(json.loads(DASHBOARD.read_text())["panels"])
    return found


def wait_for_a_scrape_after(prometheus: str, instance: str, moment: float) -> None:
    """Until Prometheus holds a sample of `instance` taken after `moment` (a wall-clock time)."""
    query = f'timestamp(up{{instance="{instance}"}})'
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        result = api(prometheus, "/api/v1/query", query=query)["result"]
        if result and float(result[0]["value"][1]) > moment:
            return
        time.sleep(0.2)
    raise AssertionError(f"no scrape of {instance} after the load within 15 s")


def has_data(result: list[dict[str, Any]]) -> bool:
    return any(math.isfinite(float(series["value"][1])) for series in result)


@pytest.mark.timeout(120)
def test_every_dashboard_query_returns_data_from_a_real_prometheus_scraping_a_loaded_daemon(
    stack: Stack,
) -> None:
    asyncio.run(load(stack.loaded.port))
    loaded_until = time.time() + 0.5  # the server counts a close just after the client sees it
    instance = stack.instance(stack.loaded)
    wait_for_a_scrape_after(stack.prometheus, instance, loaded_until)
    jobs = api(stack.prometheus, "/api/v1/label/job/values")
    assert jobs == [JOB]  # the dashboard's $job variable: label_values(..., job)
    variables = {"job": JOB, "instance": stack.instance(stack.loaded)}
    queries = [(title, substitute(expr, variables)) for title, expr in dashboard_queries()]
    assert len(queries) == 28
    missing: list[str] = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        missing = [
            title
            for title, query in queries
            if not has_data(api(stack.prometheus, "/api/v1/query", query=query)["result"])
        ]
        if not missing:
            break
        time.sleep(0.5)
    assert missing == []
    # the load's own events are there, not only the zeros every series starts at

    def value(query: str) -> float:
        (series,) = api(stack.prometheus, "/api/v1/query", query=query)["result"]
        return float(series["value"][1])

    for status, at_least in (("101", 40), ("404", 1), ("401", 1), ("400", 1), ("429", 1)):
        count = value(f'ws_supervisor_handshakes_total{{instance="{instance}",status="{status}"}}')
        assert count >= at_least, status
    assert value(f'ws_supervisor_closes_total{{instance="{instance}",code="1000"}}') >= 30
    assert value(f'ws_supervisor_closes_total{{instance="{instance}",code="1006"}}') == 1
    failures = (
        f'ws_supervisor_admission_failures_total{{instance="{instance}",outcome="emergency"}}'
    )
    assert value(failures) == 1
    assert value(f'ws_supervisor_build_info{{instance="{instance}"}}') == 1
    assert (
        0
        < value(f'process_open_fds{{instance="{instance}"}}')
        < value(f'process_max_fds{{instance="{instance}"}}')
    )
    rules = api(stack.prometheus, "/api/v1/rules")["groups"]
    health = {rule["name"]: rule["health"] for group in rules for rule in group["rules"]}
    assert len(health) == 14 and set(health.values()) == {"ok"}


@pytest.mark.timeout(120)
def test_a_real_thread_id_mismatch_shows_as_the_counter_readyz_503_and_the_alert_firing(
    stack: Stack,
) -> None:
    faulty = stack.faulty

    async def connect_and_close() -> None:
        async with connect(faulty.url("victim"), open_timeout=5) as ws:
            await asyncio.wait_for(ws.recv(), 5)

    assert faulty.get("/readyz")[0] == 200
    asyncio.run(connect_and_close())
    deadline = time.monotonic() + 10
    while faulty.get("/readyz")[0] != 503 and time.monotonic() < deadline:
        time.sleep(0.05)
    status, body = faulty.get("/readyz")
    assert (status, body["reasons"]) == (503, ["thread_id mismatch seen (1)"])
    _, metrics = faulty.get("/metrics")
    assert "ws_supervisor_thread_id_mismatches_total 1.0" in metrics
    assert 'ws_supervisor_ready{trigger="thread_id_mismatch"} 0.0' in metrics
    instance = stack.instance(faulty)
    firing: list[dict[str, Any]] = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        firing = [
            alert
            for alert in api(stack.prometheus, "/api/v1/alerts")["alerts"]
            if alert["state"] == "firing" and alert["labels"]["instance"] == instance
        ]
        if firing:
            break
        time.sleep(0.25)
    assert [alert["labels"]["alertname"] for alert in firing] == ["WsSupervisorThreadIdMismatch"]
    assert firing[0]["annotations"]["summary"] == (
        f"ws-supervisor {instance}: thread_id mismatch (rollback trigger)"
    )
    # the loaded daemon saw no mismatch and raises no rollback alert
    others = api(stack.prometheus, "/api/v1/alerts")["alerts"]
    assert not [
        a
        for a in others
        if a["labels"]["instance"] == stack.instance(stack.loaded)
        and a["labels"]["alertname"] == "WsSupervisorThreadIdMismatch"
    ]
