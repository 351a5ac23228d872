"""The master's admin backend, asking real workers' admin listeners on their Unix sockets.

Each "worker" here is a real supervision tree with its metrics, readiness
and admin listener on a Unix socket, in this process; the seats the backend
reads are plain records the tests set.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path

import attrs
import pytest

from actors.clock import SystemClock
from actors.errors import InvalidIdError
from actors.ports import QueuePort
from actors.tree import SupervisionTree
from supervisor.admin.backend import TreeAdminBackend
from supervisor.admin.dump import every_user
from supervisor.admin.fanout import FanoutObserver
from supervisor.admin.listener import AdminServer
from supervisor.admin.metrics import MetricsObserver
from supervisor.admin.readiness import Readiness
from supervisor.errors import BackendUnavailable
from supervisor.front.bridge import off_loop
from supervisor.workers.gather import WorkersBackend, ask_worker
from tests.helpers import connect, make_config

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(60)]


@attrs.define
class Seat:
    index: int
    admin_path: str
    pid: int | None = 1000
    node_id: str = ""
    restarts: int = 0
    serving: bool = True


@attrs.define
class Worker:
    seat: Seat
    tree: SupervisionTree
    readiness: Readiness
    server: AdminServer


@contextlib.asynccontextmanager
async def workers(tmp_path: Path, count: int = 2) -> AsyncIterator[list[Worker]]:
    started: list[Worker] = []
    try:
        for index in range(count):
            metrics, readiness = MetricsObserver(), Readiness(SystemClock())
            config = make_config({"server": {"node_id": f"d-w{index}"}})
            tree = SupervisionTree(
                config, observer=FanoutObserver(metrics, readiness), node_id=f"d-w{index}"
            )
            await off_loop(tree.start)
            path = str(tmp_path / f"w{index}.sock")
            backend = TreeAdminBackend(tree, metrics, readiness)
            server = AdminServer("127.0.0.1", 0, backend, None, path=path)
            await server.start()
            seat = Seat(index, path, node_id=f"d-w{index}")
            started.append(Worker(seat, tree, readiness, server))
        yield started
    finally:
        for worker in started:
            await worker.server.close()
            await off_loop(worker.tree.stop)


def backend_of(
    running: list[Worker], owners: dict[str, int] | None = None, draining: list[bool] | None = None
) -> WorkersBackend:
    """The backend over ``running``; the daemon drains once ``draining`` holds something."""
    return WorkersBackend(
        [w.seat for w in running],
        daemon_id="d",
        draining=lambda: bool(draining),
        owner=lambda user: (owners or {}).get(user, 0),
        own_metrics=list,
    )


async def admitted(worker: Worker, user: str) -> QueuePort:
    admission, port, _ = await off_loop(lambda: connect(worker.tree, user))
    assert admission.handle is not None
    return port


def sample(text: bytes, name: str) -> float:
    for line in text.decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"no {name}")


async def test_metrics_are_every_worker_s_summed_and_a_dead_one_s_counts_are_kept(
    tmp_path: Path,
) -> None:
    async with workers(tmp_path) as running:
        backend = backend_of(running)
        for user in ("a", "b", "c"):
            await admitted(running[0], user)
        await admitted(running[1], "d")
        text = await backend.metrics_text()
        assert sample(text, "ws_supervisor_managers_active") == 4.0
        assert sample(text, 'ws_supervisor_admissions_total{result="admitted"}') == 4.0
        running[0].seat.serving = False  # worker 0 died...
        backend.worker_gone(0)
        text = await backend.metrics_text()
        assert sample(text, "ws_supervisor_managers_active") == 1.0
        assert sample(text, 'ws_supervisor_admissions_total{result="admitted"}') == 4.0


async def test_a_worker_that_does_not_answer_counts_with_what_it_said_last(
    tmp_path: Path,
) -> None:
    async with workers(tmp_path) as running:
        backend = backend_of(running)
        await admitted(running[1], "e")
        assert sample(await backend.metrics_text(), "ws_supervisor_managers_active") == 1.0
        await running[1].server.close()  # alive, but its listener is gone
        text = await backend.metrics_text()
        assert sample(text, 'ws_supervisor_admissions_total{result="admitted"}') == 1.0


async def test_the_daemon_is_ready_only_when_every_worker_serves_and_is_ready(
    tmp_path: Path,
) -> None:
    async with workers(tmp_path) as running:
        draining: list[bool] = []
        backend = backend_of(running, draining=draining)
        assert await backend.readiness() == (True, [])
        running[1].readiness.set_draining(True)
        assert await backend.readiness() == (False, ["worker 1: draining"])
        running[0].seat.serving = False
        draining.append(True)
        assert await backend.readiness() == (
            False,
            ["draining", "worker 0: not serving (restarting)", "worker 1: draining"],
        )


async def test_the_state_shows_every_worker_and_every_user_where_it_lives(tmp_path: Path) -> None:
    async with workers(tmp_path) as running:
        backend = backend_of(running)
        await admitted(running[0], "alice")
        await admitted(running[1], "bob")
        await admitted(running[1], "bob")
        state = await backend.state()
    assert [(u["user_id"], u["worker"], u["used"]) for u in every_user(state)] == [
        ("alice", 0, 1),
        ("bob", 1, 2),
    ]
    assert state["root"]["node_id"] == "d"
    assert state["root"]["slots_held"] == 3
    assert [(w["worker_id"], w["node_id"], w["root"]["slots_held"]) for w in state["workers"]] == [
        (0, "d-w0", 1),
        (1, "d-w1", 2),
    ]


async def test_health_holds_while_one_worker_answers(tmp_path: Path) -> None:
    async with workers(tmp_path) as running:
        backend = backend_of(running)
        running[0].seat.serving = False
        alive, details = await backend.health()
        assert alive is True
        assert details["workers"] == [
            {"index": 0, "status": "restarting"},
            {"index": 1, "status": "ok"},
        ]
        running[1].seat.serving = False
        assert (await backend.health())[0] is False


async def test_a_push_goes_to_the_user_s_worker_only(tmp_path: Path) -> None:
    async with workers(tmp_path) as running:
        backend = backend_of(running, owners={"carol": 1})
        port = await admitted(running[1], "carol")
        assert (await backend.push("carol", None, {"hi": 1})).as_json() == {"delivered": 1}
        assert json.loads(port.frames.get(timeout=5)) == {"hi": 1}
        with pytest.raises(InvalidIdError):
            await backend.push("bad:id", None, {})
        running[1].seat.serving = False
        with pytest.raises(BackendUnavailable, match="worker 1, the user's, is restarting"):
            await backend.push("carol", None, {})


async def test_the_cluster_view_is_a_worker_s_and_its_refusal_is_told(tmp_path: Path) -> None:
    async with workers(tmp_path) as running:
        backend = backend_of(running)
        with pytest.raises(BackendUnavailable, match="counts slots in memory"):
            await backend.cluster()


async def test_asking_a_socket_nobody_serves_is_an_os_error(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        await ask_worker(str(tmp_path / "nobody.sock"), "GET", "/healthz")
