"""A seat of the master with real worker processes: started, ready, heard, replaced, failed."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
from pathlib import Path
from typing import Any

import pytest

from supervisor.config.load import config_to_dict
from supervisor.errors import WorkerFailed
from supervisor.workers.gather import ask_worker
from supervisor.workers.process import WorkerProcess, describe_exit
from supervisor.workers.seat import Setup
from tests.helpers import make_config

pytestmark = pytest.mark.timeout(90)


def seat(run_dir: Path, lines: list[str], index: int = 0) -> WorkerProcess:
    return WorkerProcess(
        index,
        run_dir=str(run_dir),
        daemon_id="d",
        refuse=socket.socket.close,
        log_text=lines.append,
    )


def setup_of(place: WorkerProcess, overrides: dict[str, Any] | None = None) -> Setup:
    config = make_config({"server": {"node_id": place.node_id}, **(overrides or {})})
    return Setup(place.index, 2, config_to_dict(config), None, place.run_dir, os.getpid())


def test_each_process_of_a_seat_has_its_own_node_id() -> None:
    place = WorkerProcess(3, run_dir="/x", daemon_id="d", refuse=print, log_text=print)
    assert place.node_id == "d-w3"
    place.generation = 2
    assert place.node_id == "d-w3-2"
    long = WorkerProcess(1, run_dir="/x", daemon_id="n" * 64, refuse=print, log_text=print)
    assert len(long.node_id) == 64 and long.node_id.endswith("-w1")


def test_an_exit_is_described_by_its_status_or_its_signal() -> None:
    assert describe_exit(0) == "exit status 0"
    assert describe_exit(-signal.SIGKILL) == "killed by SIGKILL"
    assert describe_exit(-99) == "killed by signal 99"


@pytest.mark.asyncio
async def test_a_worker_starts_serves_its_admin_socket_and_drains_on_sigterm(
    tmp_path: Path,
) -> None:
    lines: list[str] = []
    place = seat(tmp_path, lines)
    try:
        await place.start(setup_of(place))
        assert place.serving and place.pid is not None
        status, body = await ask_worker(place.admin_path, "GET", "/debug/state")
        assert status == 200
        assert json.loads(body)["root"]["node_id"] == "d-w0"
        place.signal(signal.SIGTERM)
        assert await asyncio.wait_for(place.wait(), 30) == 0
        assert not place.serving
    finally:
        place.signal(signal.SIGKILL)
        place.gone()
    text = "\n".join(lines)
    assert "ws-supervisor worker 0 node d-w0 serving" in text  # its stderr, passed on
    assert "ws-supervisor node d-w0 stopped" in text


@pytest.mark.asyncio
async def test_a_worker_that_cannot_start_fails_with_its_exit_status_and_last_lines(
    tmp_path: Path,
) -> None:
    lines: list[str] = []
    place = seat(tmp_path, lines)
    with pytest.raises(WorkerFailed) as failed:
        await place.start(setup_of(place, {"server": {"app": "no.such.module:App"}}))
    message = str(failed.value)
    assert message.startswith("worker 0 did not start (exit status 2); its last lines:")
    assert "server.app" in message
    assert not place.serving and place.channel is None


@pytest.mark.asyncio
async def test_hand_offs_go_only_to_a_serving_worker_and_its_users_are_remembered(
    tmp_path: Path,
) -> None:
    place = seat(tmp_path, [])
    first, second = socket.socketpair()
    assert place.hand_off("alice", b"", first) is False  # not started
    try:
        await place.start(setup_of(place))
        assert place.hand_off("alice", b"GET / HTTP/1.1\r\n\r\n", first)
        assert place.users == {"alice"}
    finally:
        place.signal(signal.SIGKILL)
        await place.wait()
        place.gone()
        second.close()
