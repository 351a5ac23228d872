"""Real processes: killed and frozen clients, and the daemon under signals and its CLI."""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from actors.codes import ServerCloseCode
from tests.integration.harness import CLI, ROOT, DaemonProcess, python, running_daemon, ws_url

CLIENT = str(Path(__file__).with_name("client_proc.py"))


def start_clients(url: str, count: int) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [python(), CLIENT, url, str(count)], stdout=subprocess.PIPE, text=True, cwd=ROOT
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    return proc


@pytest.mark.asyncio
@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGSTOP], ids=["killed", "frozen"])
async def test_a_killed_or_frozen_client_process_has_its_slots_freed_within_the_keepalive_deadline(
    how: signal.Signals,
) -> None:
    async with running_daemon() as daemon:
        loop = asyncio.get_running_loop()
        proc = await loop.run_in_executor(None, start_clients, ws_url(daemon), 3)
        try:
            assert daemon.tree.ledger.usage("alice") == 3
            proc.send_signal(how)
            started = time.monotonic()
            timeouts = daemon.config.timeouts
            bound = timeouts.ping_interval + timeouts.ping_timeout + 1.0
            while daemon.tree.ledger.usage("alice") and time.monotonic() - started < bound + 2:
                await asyncio.sleep(0.01)
            elapsed = time.monotonic() - started
            assert daemon.tree.ledger.usage("alice") == 0
            assert elapsed <= bound, f"freed after {elapsed:.2f}s, bound {bound}s"
        finally:
            proc.kill()
            proc.wait(5)
            if proc.stdout:
                proc.stdout.close()


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


def set_key(path: Path, key: str, value: float | str) -> None:
    text = path.read_text()
    lines = [
        f"{key} = {value}" if line.startswith(f"{key} ") else line for line in text.splitlines()
    ]
    path.write_text("\n".join(lines) + "\n")


def set_quota(path: Path, value: int | str) -> None:
    set_key(path, "max_managers_per_user", value)


async def _refused(url: str) -> int | None:
    try:
        ws = await connect(url)
    except InvalidStatus as error:
        return error.response.status_code
    await ws.close()
    return None


@pytest.mark.asyncio
async def test_sigterm_drains_every_connection_with_1001_and_exits_0(
    daemon_proc: DaemonProcess,
) -> None:
    clients = [await connect(daemon_proc.url(user)) for user in ("alice", "bob", "bob")]
    daemon_proc.signal(signal.SIGTERM)
    for ws in clients:
        with pytest.raises(ConnectionClosed):
            while True:
                await asyncio.wait_for(ws.recv(), 10)
        assert ws.close_code == ServerCloseCode.GOING_AWAY
    loop = asyncio.get_running_loop()
    assert await loop.run_in_executor(None, daemon_proc.wait, 20) == 0
    assert "gc: thresholds (10000, 10, 10)" in daemon_proc.output()  # tuned for the daemon


F_SETPIPE_SZ, PIPE_BYTES = 1031, 4096  # Linux: the smallest pipe, full after a few lines


@pytest.mark.asyncio
@pytest.mark.timeout(90)
async def test_a_daemon_whose_log_pipe_is_not_read_keeps_admitting_and_loses_no_line(
    config_file: Path,
) -> None:
    proc = DaemonProcess(config_file, unread_pipe=True)
    try:
        assert proc.proc.stdout is not None
        fcntl.fcntl(proc.proc.stdout.fileno(), F_SETPIPE_SZ, PIPE_BYTES)
        proc.wait_ready()
        for n in range(300):  # an INFO line per admission: far more than the pipe holds
            async with connect(proc.url(f"user{n % 10}"), open_timeout=5) as ws:
                welcome = json.loads(await asyncio.wait_for(ws.recv(), 5))
                assert welcome["type"] == "welcome" and welcome["user_id"] == f"user{n % 10}"
        proc.signal(signal.SIGTERM)
        out = await asyncio.get_running_loop().run_in_executor(None, proc.read_to_end, 30)
    finally:
        proc.kill()
    assert proc.proc.returncode == 0
    admitted = [line for line in out.splitlines() if "admitted user_id=" in line]
    assert len(admitted) == 300
    assert sum(len(line) + 1 for line in admitted) > 4 * PIPE_BYTES
    assert "dropped" not in out  # the writer's queue held every line the pipe could not


@pytest.mark.asyncio
async def test_sighup_applies_a_new_quota_live_rejects_a_bad_file_and_names_what_waits(
    daemon_proc: DaemonProcess, config_file: Path
) -> None:
    set_quota(config_file, 2)
    daemon_proc.signal(signal.SIGHUP)
    await asyncio.sleep(0.5)
    clients = [await connect(daemon_proc.url()) for _ in range(2)]
    assert await _refused(daemon_proc.url()) == 429
    set_quota(config_file, '"three"')  # invalid: rejected, the quota of 2 stays
    daemon_proc.signal(signal.SIGHUP)
    await asyncio.sleep(0.5)
    assert await _refused(daemon_proc.url()) == 429
    set_quota(config_file, 3)
    set_key(config_file, "messages_per_second", 50.0)  # not applied live: named in the log
    daemon_proc.signal(signal.SIGHUP)
    await asyncio.sleep(0.5)
    assert await _refused(daemon_proc.url()) is None
    assert "reload: limits.messages_per_second apply at the next restart" in daemon_proc.output()
    for ws in clients:
        assert ws.state.name == "OPEN"  # nothing dropped by the reloads
        await ws.close()


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


JWT_ENV = {"WSS_JWT_SECRET": "s" * 32}


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


@pytest.mark.asyncio
async def test_sigusr1_writes_the_state_and_the_stacks_and_a_second_sigint_forces_exit(
    config_file: Path,
) -> None:
    proc = DaemonProcess(
        config_file,
        env={
            "WS_SUPERVISOR_SERVER_APP": "tests.apps.faulty:FaultyApp",
            "WS_SUPERVISOR_CLEANUP_EMERGENCY_CLEANUP_TIMEOUT": "20.0",
            "PYTHONPATH": str(ROOT),
        },
    )
    try:
        proc.wait_ready()
        ws = await connect(proc.url("erin"))
        await ws.recv()
        await ws.send(json.dumps({"type": "hang"}))  # its manager will not stop for 20 s
        proc.signal(signal.SIGUSR1)
        await asyncio.sleep(0.5)
        proc.signal(signal.SIGINT)  # the drain waits on the hung manager...
        await asyncio.sleep(0.5)
        assert proc.proc.poll() is None
        started = time.monotonic()
        proc.signal(signal.SIGINT)  # ...until the second SIGINT
        loop = asyncio.get_running_loop()
        assert await loop.run_in_executor(None, proc.wait, 10) == 1
        assert time.monotonic() - started < 5
        output = proc.output()
        assert "state dump" in output and '"user_id": "erin"' in output
        assert "thread MainThread" in output and "second SIGINT" in output
    finally:
        proc.kill()


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
