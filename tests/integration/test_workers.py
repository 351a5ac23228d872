"""``ws-supervisor serve --workers N`` as a real process tree, with real clients on loopback.

The master is started as a service manager would start it; its workers are
found through ``/debug/state`` and signalled by their pids.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from supervisor.admin.dump import every_user
from tests.integration.harness import CLI, ROOT, DaemonProcess, recv_json

pytestmark = pytest.mark.timeout(120)


def serve(config: Path, workers: str, env: dict[str, str] | None = None) -> DaemonProcess:
    proc = DaemonProcess(
        config, env=env, argv=[CLI, "serve", "--config", str(config), "--workers", workers]
    )
    proc.wait_ready(60)
    return proc


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "node.toml"
    shutil.copy(ROOT / "config" / "ci.toml", path)
    return path


@pytest.fixture
def three(config_file: Path) -> Iterator[DaemonProcess]:
    proc = serve(config_file, "3")
    try:
        yield proc
    finally:
        for pid in worker_pids(proc, quiet=True):
            _kill(pid)
        proc.kill()


def worker_pids(proc: DaemonProcess, quiet: bool = False) -> list[int]:
    try:
        status, state = proc.get("/debug/state")
    except OSError:
        if quiet:
            return []
        raise
    return [w["pid"] for w in state["workers"]] if status == 200 else []


def alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie waiting for its parent counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _kill(pid: int) -> None:
    if alive(pid):
        os.kill(pid, signal.SIGKILL)


async def clients(proc: DaemonProcess, users: int, each: int) -> list[ClientConnection]:
    held = []
    for n in range(users):
        for _ in range(each):
            ws = await connect(proc.url(f"user{n}"), open_timeout=10)
            assert (await recv_json(ws))["type"] == "welcome"
            held.append(ws)
    return held


async def close_codes(held: list[ClientConnection]) -> list[int | None]:
    async def one(ws: ClientConnection) -> int | None:
        try:
            while True:
                await asyncio.wait_for(ws.recv(), 15)
        except ConnectionClosed:
            return ws.close_code

    return list(await asyncio.gather(*(one(ws) for ws in held)))


@pytest.mark.asyncio
async def test_sigterm_drains_every_worker_with_1001_and_the_master_exits_0(
    three: DaemonProcess,
) -> None:
    held = await clients(three, 12, 2)
    state = three.get("/debug/state")[1]
    assert len({u["worker"] for u in every_user(state)}) >= 2  # the users live apart
    pids = worker_pids(three)
    three.signal(signal.SIGTERM)
    codes = await close_codes(held)
    loop = asyncio.get_running_loop()
    assert await loop.run_in_executor(None, three.wait, 30) == 0
    assert codes == [1001] * len(held)
    assert not [pid for pid in pids if alive(pid)]
    assert "Traceback" not in three.output()


@pytest.mark.asyncio
async def test_a_killed_master_takes_no_worker_with_it_undrained(three: DaemonProcess) -> None:
    held = await clients(three, 6, 1)
    pids = worker_pids(three)
    three.proc.kill()  # no drain of its own: each worker hears it is gone and drains
    codes = await close_codes(held)
    assert codes == [1001] * len(held)
    deadline = time.monotonic() + 20
    while [pid for pid in pids if alive(pid)] and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert not [pid for pid in pids if alive(pid)]


@pytest.mark.asyncio
async def test_a_second_sigint_kills_the_workers_and_exits_1(config_file: Path) -> None:
    env = {
        "WS_SUPERVISOR_SERVER_APP": "tests.apps.faulty:FaultyApp",
        "WS_SUPERVISOR_CLEANUP_EMERGENCY_CLEANUP_TIMEOUT": "20.0",
        "PYTHONPATH": str(ROOT),
    }
    proc = serve(config_file, "2", env)
    try:
        pids = worker_pids(proc)
        ws = await connect(proc.url("erin"), open_timeout=10)
        await ws.recv()
        await ws.send(json.dumps({"type": "hang"}))  # its manager will not stop for 20 s
        await asyncio.sleep(0.3)
        proc.signal(signal.SIGINT)  # the drain waits on the hung manager...
        await asyncio.sleep(1.0)
        assert proc.proc.poll() is None
        started = time.monotonic()
        proc.signal(signal.SIGINT)  # ...until the second SIGINT
        loop = asyncio.get_running_loop()
        assert await loop.run_in_executor(None, proc.wait, 10) == 1
        assert time.monotonic() - started < 5
        assert not [pid for pid in pids if alive(pid)]
        assert "second SIGINT" in proc.output()
    finally:
        for pid in worker_pids(proc, quiet=True):
            _kill(pid)
        proc.kill()


@pytest.mark.asyncio
async def test_dump_shows_every_worker_and_the_users_on_each(three: DaemonProcess) -> None:
    held = await clients(three, 4, 2)
    result = subprocess.run(
        [CLI, "dump", "--admin", three.admin], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("node ") and " 8/" in lines[0]
    workers = [line for line in lines if line.startswith("worker ")]
    assert len(workers) == 3
    assert all(" serving " in line for line in workers)
    assert sum(int(line.split(" used ")[1].split("/")[0]) for line in workers) == 8
    for ws in held:
        await ws.close()


@pytest.mark.asyncio
async def test_a_killed_worker_is_named_with_how_it_ended_and_comes_back(
    three: DaemonProcess,
) -> None:
    victim = worker_pids(three)[1]
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        await asyncio.sleep(0.1)
        pids = worker_pids(three)
        if victim not in pids and three.get("/readyz")[0] == 200:
            break
    status, state = three.get("/debug/state")
    assert status == 200 and [w["restarts"] for w in state["workers"]] == [0, 1, 0]
    assert f"worker 1 (pid {victim}, node " in three.output()
    assert "ended: killed by SIGKILL; starting it again" in three.output()


def test_one_worker_is_the_single_process_daemon_with_no_master(config_file: Path) -> None:
    proc = serve(config_file, "1")
    try:
        children = Path(f"/proc/{proc.proc.pid}/task/{proc.proc.pid}/children").read_text()
        assert children.split() == []
        status, state = proc.get("/debug/state")
        assert status == 200 and "workers" not in state
    finally:
        proc.kill()
