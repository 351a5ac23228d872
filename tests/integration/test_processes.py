"""Real processes: killed and frozen clients, and the daemon under signals."""

from __future__ import annotations

import asyncio
import fcntl
import json
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from actors.codes import ServerCloseCode
from tests.integration.harness import ROOT, DaemonProcess, python, running_daemon, ws_url

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
        ids = []
        for n in range(300):  # an INFO line per connection: far more than the pipe holds
            async with connect(proc.url(f"user{n % 10}"), open_timeout=5) as ws:
                welcome = json.loads(await asyncio.wait_for(ws.recv(), 5))
                assert welcome["type"] == "welcome" and welcome["user_id"] == f"user{n % 10}"
                ids.append(welcome["websocket_id"])
        proc.signal(signal.SIGTERM)
        out = await asyncio.get_running_loop().run_in_executor(None, proc.read_to_end, 30)
    finally:
        proc.kill()
    assert proc.proc.returncode == 0
    closed = [line for line in out.splitlines() if " supervisor.access: closed user_id=" in line]
    assert len(closed) == 300
    assert sum(len(line) + 1 for line in closed) > 4 * PIPE_BYTES
    assert "dropped" not in out  # the writer's queue held every line the pipe could not
    lines = out.splitlines()
    for websocket_id in ids:  # one line per connection, ours: websockets' own are silenced
        [line] = [line for line in lines if websocket_id in line]
        assert line in closed and f" websocket_id={websocket_id} " in line
    assert "connection open" not in out and "connection closed" not in out


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
