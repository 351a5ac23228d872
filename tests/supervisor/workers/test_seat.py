"""A worker's seat: the setup read from the master, the unreachable socket, the link back."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from supervisor.config.load import config_to_dict
from supervisor.workers.handoff import Channel
from supervisor.workers.seat import Setup, WorkerSeat, admin_socket_path
from tests.helpers import make_config

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parents[3]


def setup(run_dir: Path, master_pid: int, index: int = 2) -> Setup:
    config = make_config({"server": {"node_id": "d-w2"}})
    return Setup(index, 4, config_to_dict(config), "/etc/node.toml", str(run_dir), master_pid)


def test_a_setup_travels_as_a_control_message_and_back() -> None:
    sent = setup(Path("/run/x"), 42)
    assert Setup.from_message(json.loads(json.dumps(sent.to_message()))) == sent


JOIN = """
import sys
from supervisor.workers.seat import WorkerSeat
try:
    seat = WorkerSeat.join(int(sys.argv[1]), timeout=10)
except ConnectionAbortedError as error:
    print("aborted:", error)
else:
    print(seat.index, seat.config.server.node_id, seat.config_path, seat.admin_path)
"""


def join_in_a_child(run_dir: Path, master_pid: int) -> str:
    mine, theirs = Channel.pair()
    child = subprocess.Popen(
        [sys.executable, "-c", JOIN, str(theirs.fileno())],
        pass_fds=(theirs.fileno(),),
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    theirs.close()
    Channel(mine).send_control(setup(run_dir, master_pid).to_message())
    out, _ = child.communicate(timeout=30)
    mine.close()
    return out.strip()


def test_a_worker_joins_with_the_master_s_setup(tmp_path: Path) -> None:
    said = join_in_a_child(tmp_path, os.getpid())  # this test is the child's master
    admin = admin_socket_path(str(tmp_path), 2)
    assert said == f"2 d-w2 /etc/node.toml {admin}"


def test_a_worker_whose_master_is_not_its_parent_does_not_join(tmp_path: Path) -> None:
    assert join_in_a_child(tmp_path, 1) == "aborted: the master is gone"


def test_the_front_s_socket_listens_yet_nobody_can_connect_to_it(tmp_path: Path) -> None:
    seat = WorkerSeat(Channel(socket.socketpair()[0]), setup(tmp_path, os.getpid()))
    sock = seat.listening()
    try:
        assert list(tmp_path.iterdir()) == []  # its path is gone
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) == 1
        with pytest.raises(FileNotFoundError):
            socket.socket(socket.AF_UNIX).connect(str(tmp_path / "worker-2.idle"))
    finally:
        sock.close()
        seat.channel.close()


def test_hand_offs_reach_the_front_ready_reaches_the_master_and_its_end_is_told(
    tmp_path: Path,
) -> None:
    mine, theirs = Channel.pair()
    master, seat = Channel(mine), WorkerSeat(Channel(theirs), setup(tmp_path, os.getpid()))
    adopted: list[tuple[bytes, str]] = []
    said: list[dict[str, object]] = []
    gone = []

    async def run() -> None:
        client, server = socket.socketpair()

        def adopt(sock: socket.socket, prefix: bytes, user: str) -> None:
            adopted.append((prefix, user))
            sock.close()

        seat.serve(adopt, lambda: gone.append(1))
        master.receive(lambda *_: None, said.append, lambda: None)
        assert master.hand_off("alice", b"GET /ws", server)
        seat.ready()
        while not (adopted and said):
            await asyncio.sleep(0.01)
        master.close()
        while not gone:
            await asyncio.sleep(0.01)
        client.close()

    asyncio.run(asyncio.wait_for(run(), 10))
    assert adopted == [(b"GET /ws", "alice")]
    assert said == [{"ready": os.getpid()}]
    assert gone == [1]
    seat.channel.close()
