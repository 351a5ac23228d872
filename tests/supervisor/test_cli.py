"""The ``ws-supervisor`` command as a user runs it: a real process, its output and exit status.

``serve`` (what stops it before it starts), ``dump`` against a real daemon,
``check-config``, ``profile`` and ``--version``.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from websockets.asyncio.client import connect

from tests.integration.harness import CLI, ROOT, DaemonProcess


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "node.toml"
    shutil.copy(ROOT / "config" / "ci.toml", path)
    return path


@pytest.fixture
def daemon_proc(config_file: Path) -> Iterator[DaemonProcess]:
    proc = DaemonProcess(config_file)
    try:
        proc.wait_ready()
        yield proc
    finally:
        proc.kill()


JWT_ENV = {"WSS_JWT_SECRET": "s" * 32}


@pytest.mark.asyncio
async def test_dump_prints_the_tree_and_json(daemon_proc: DaemonProcess) -> None:
    ws = await connect(daemon_proc.url("dora"))
    welcome = json.loads(await ws.recv())
    loop = asyncio.get_running_loop()
    text = await loop.run_in_executor(
        None,
        lambda: subprocess.run(
            [CLI, "dump", "--admin", daemon_proc.admin], capture_output=True, text=True, timeout=20
        ),
    )
    assert text.returncode == 0, text.stderr
    assert "dora" in text.stdout and welcome["websocket_id"] in text.stdout
    raw = await loop.run_in_executor(
        None,
        lambda: subprocess.run(
            [CLI, "dump", "--admin", daemon_proc.admin, "--json"],
            capture_output=True,
            text=True,
            timeout=20,
        ),
    )
    state = json.loads(raw.stdout)
    assert [u["user_id"] for u in state["users"]] == ["dora"]
    await ws.close()


def test_dump_against_a_dead_admin_url_fails_cleanly_with_exit_3() -> None:
    result = subprocess.run(
        [CLI, "dump", "--admin", "http://127.0.0.1:9"], capture_output=True, text=True, timeout=20
    )
    assert result.returncode == 3
    assert "Traceback" not in result.stderr and "127.0.0.1:9" in result.stderr


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The CLI with ``env`` (else none of the caller's WS_SUPERVISOR_* or JWT variables)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("WS_SUPERVISOR_", "WSS_"))}
    return subprocess.run(
        [CLI, *args], capture_output=True, text=True, timeout=20, env={**clean, **(env or {})}
    )


def test_check_config_reports_every_problem_with_its_key_path(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(
        '[quota]\nmax_managers_per_user = 20.9\npolicy = "maybe"\n'
        '[logging]\njson = "false"\n[nope]\nx = 1\n'
    )
    result = run_cli("check-config", str(bad))
    assert result.returncode == 2
    for path in ("quota.max_managers_per_user", "quota.policy", "logging.json", "nope"):
        assert path in result.stderr
    assert "Traceback" not in result.stderr
    good = run_cli("check-config", str(ROOT / "config" / "staging.toml"), env=JWT_ENV)
    assert good.returncode == 0, good.stderr


def test_check_config_checks_the_secret_the_file_names_as_serve_would() -> None:
    production = str(ROOT / "config" / "production.toml")
    missing = run_cli("check-config", production)
    assert missing.returncode == 2
    assert "auth.secret_env: environment variable WSS_JWT_SECRET is not set" in missing.stderr
    short = run_cli("check-config", production, env={"WSS_JWT_SECRET": "short"})
    assert short.returncode == 2
    assert "the secret in WSS_JWT_SECRET is 5 bytes" in short.stderr
    assert "short" not in short.stderr.replace("is 5 bytes", "")  # never the secret itself
    assert run_cli("check-config", production, env=JWT_ENV).returncode == 0


def test_check_config_refuses_an_admin_token_env_whose_variable_is_unset_or_empty(
    tmp_path: Path,
) -> None:
    dev = (ROOT / "config" / "dev.toml").read_text()
    path = tmp_path / "dev.toml"
    path.write_text(dev.replace('token_env = ""', 'token_env = "WSS_ADMIN_TOKEN"', 1))
    for env in ({}, {"WSS_ADMIN_TOKEN": ""}):
        result = run_cli("check-config", str(path), env=env)
        assert result.returncode == 2
        assert "admin.token_env: environment variable WSS_ADMIN_TOKEN is" in result.stderr
        assert "Traceback" not in result.stderr
    assert run_cli("check-config", str(path), env={"WSS_ADMIN_TOKEN": "t0ken"}).returncode == 0


def test_check_config_lays_the_environment_over_the_file_and_names_a_bad_override() -> None:
    production = str(ROOT / "config" / "production.toml")
    env = {**JWT_ENV, "WS_SUPERVISOR_QUOTA_MAX_MANAGERS_PER_USER": "lots"}
    result = run_cli("check-config", production, env=env)
    assert result.returncode == 2
    assert "quota.max_managers_per_user (WS_SUPERVISOR_QUOTA_MAX_MANAGERS_PER_USER)" in (
        result.stderr
    )
    typo = run_cli("check-config", production, env={**JWT_ENV, "WS_SUPERVISOR_QUOTA_MAX": "3"})
    assert typo.returncode == 2 and "WS_SUPERVISOR_QUOTA_MAX" in typo.stderr
    assert "Traceback" not in result.stderr + typo.stderr


def test_check_config_file_only_checks_the_file_alone() -> None:
    production = str(ROOT / "config" / "production.toml")
    env = {"WS_SUPERVISOR_QUOTA_MAX_MANAGERS_PER_USER": "lots"}  # and no JWT secret
    result = run_cli("check-config", "--file-only", production, env=env)
    assert result.returncode == 0, result.stderr
    assert "ok (the file alone)" in result.stdout


def test_version_prints_the_package_version() -> None:
    from supervisor import __version__  # noqa: PLC0415

    result = run_cli("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"ws-supervisor {__version__}"


@pytest.mark.parametrize("name", ["production", "staging", "ci", "dev"])
def test_profile_prints_the_bundled_profile_a_user_starts_from(name: str, tmp_path: Path) -> None:
    result = run_cli("profile", name)
    assert result.returncode == 0, result.stderr
    assert result.stdout == (ROOT / "config" / f"{name}.toml").read_text(encoding="utf-8")
    copy = tmp_path / f"{name}.toml"
    copy.write_text(result.stdout, encoding="utf-8")
    assert run_cli("check-config", "--file-only", str(copy)).returncode == 0


def test_an_unknown_profile_is_refused_with_the_choices() -> None:
    result = run_cli("profile", "prod")
    assert result.returncode == 2
    assert "production" in result.stderr and "Traceback" not in result.stderr


def test_serve_on_a_port_in_use_says_so_in_one_line_and_exits_2(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = DaemonProcess(
            ROOT / "config" / "ci.toml", env={"WS_SUPERVISOR_SERVER_PORT": str(port)}
        )
        try:
            assert proc.wait(20) == 2
            output = proc.output()
        finally:
            proc.kill()
    assert "cannot start" in output and "address already in use" in output
    assert "Traceback" not in output


@pytest.mark.parametrize(
    ("env", "path"),
    [({}, "auth.secret_env"), ({"WS_SUPERVISOR_AUTH_MODE": "query"}, "auth.mode")],
    ids=["no-jwt-secret", "query-auth"],
)
def test_production_refuses_to_start_without_a_jwt_secret_or_with_query_auth(
    env: dict[str, str], path: str
) -> None:
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("WS_SUPERVISOR_") and k != "WSS_JWT_SECRET"
    }
    result = subprocess.run(
        [CLI, "serve", "--profile", "production"],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert path in result.stderr and "Traceback" not in result.stderr


def test_an_admin_listener_off_loopback_without_a_token_refuses_to_start() -> None:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("WS_SUPERVISOR_")}
    env = {**clean, "WS_SUPERVISOR_ADMIN_HOST": "0.0.0.0", "WS_SUPERVISOR_SERVER_HOST": "127.0.0.1"}
    result = subprocess.run(
        [CLI, "serve", "--profile", "ci"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert "admin.token_env" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("bad", ["0", "two", "-3"])
def test_serve_refuses_a_worker_count_that_is_not_one_or_more_or_auto(bad: str) -> None:
    result = run_cli("serve", "--profile", "ci", "--workers", bad)
    assert result.returncode == 2
    assert f"--workers must be a number of processes (>= 1) or auto, not '{bad}'" in result.stderr


def test_serve_with_workers_refuses_a_bad_environment_before_starting_any_worker() -> None:
    result = run_cli("serve", "--profile", "production", "--workers", "2")
    assert result.returncode == 2
    assert "auth.secret_env" in result.stderr and "Traceback" not in result.stderr
    assert "worker" not in result.stderr


def test_serve_with_workers_refuses_trusted_proxies_it_would_not_read(config_file: Path) -> None:
    text = config_file.read_text()
    config_file.write_text(text.replace('trusted_proxies = ""', 'trusted_proxies = "127.0.0.1"'))
    result = run_cli("serve", "--config", str(config_file), "--workers", "2")
    assert result.returncode == 2
    assert "server.trusted_proxies: serve --workers N reads no PROXY header" in result.stderr
    assert "Traceback" not in result.stderr


def test_serve_with_workers_on_a_port_in_use_says_so_and_exits_2(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = DaemonProcess(
            None,
            env={"WS_SUPERVISOR_SERVER_PORT": str(port)},
            argv=[CLI, "serve", "--profile", "ci", "--workers", "2"],
        )
        try:
            assert proc.wait(30) == 2
            output = proc.output()
        finally:
            proc.kill()
    assert "cannot start" in output and "address already in use" in output
    assert "Traceback" not in output


def test_a_worker_started_by_hand_without_a_master_exits_2_saying_so() -> None:
    result = run_cli("worker", "--channel-fd", "0")
    assert result.returncode == 2
    assert "ws-supervisor worker: no setup from the master" in result.stderr


def test_the_systemd_unit_runs_commands_the_cli_accepts() -> None:
    from supervisor.cli import _parser  # noqa: PLC0415

    unit = (ROOT / "config" / "ws-supervisor.service").read_text().splitlines()
    commands = [line.split("=", 1)[1].split()[1:] for line in unit if line.startswith("ExecStart")]
    assert len(commands) == 2  # ExecStartPre (check-config) and ExecStart (serve)
    parsed = [_parser().parse_args(argv) for argv in commands]
    assert [args.command for args in parsed] == ["check-config", "serve"]
    assert parsed[1].workers == len(os.sched_getaffinity(0))  # --workers auto


@pytest.mark.asyncio
@pytest.mark.timeout(20)
async def test_the_cli_captures_each_signal_once_and_a_second_sigint_forces_the_exit() -> None:
    from supervisor.cli import capture_signals  # noqa: PLC0415

    calls: list[str] = []

    class Recorder:  # what the daemon and the master each answer to
        def request_stop(self) -> None:
            calls.append("stop")

        def force_exit(self) -> None:
            calls.append("force")

        async def reload(self) -> bool:
            calls.append("reload")
            return True

        async def dump(self) -> None:
            calls.append("dump")

    loop = asyncio.get_running_loop()
    captured = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1)
    capture_signals(Recorder())
    try:
        for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1, signal.SIGINT, signal.SIGINT):
            before = len(calls)
            os.kill(os.getpid(), signum)
            for _ in range(500):
                if len(calls) > before and (signum != signal.SIGINT or calls[-1] == "stop"):
                    break
                await asyncio.sleep(0.01)
    finally:
        for signum in captured:
            loop.remove_signal_handler(signum)
    assert calls == ["stop", "reload", "dump", "stop", "force", "stop"]
