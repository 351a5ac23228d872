"""The master on this test's loop, with real worker processes and real clients on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
from collections.abc import AsyncIterator
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from supervisor.admin.dump import every_user
from supervisor.errors import WorkerFailed
from supervisor.front.auth import Authenticator
from supervisor.workers.master import Master, worker_count
from tests.helpers import make_config
from tests.integration.harness import recv_json

pytestmark = pytest.mark.timeout(120)

LOOPBACK = {"server": {"host": "127.0.0.1", "port": 0}, "admin": {"host": "127.0.0.1", "port": 0}}


@contextlib.asynccontextmanager
async def running_master(
    workers: int = 3, overrides: dict[str, Any] | None = None
) -> AsyncIterator[Master]:
    config = make_config({**LOOPBACK, **(overrides or {})})
    master = Master(
        config,
        workers,
        authenticator=Authenticator.from_config(config.auth, config.profile, {}),
        admin_token=None,
        log_text=lambda _: None,
    )
    ready = asyncio.Event()
    task = asyncio.ensure_future(master.serve(on_ready=lambda _: ready.set()))
    waiter = asyncio.ensure_future(ready.wait())
    await asyncio.wait([task, waiter], timeout=60, return_when="FIRST_COMPLETED")
    if task.done():
        waiter.cancel()
        task.result()
    try:
        yield master
    finally:
        master.request_stop()
        with contextlib.suppress(WorkerFailed):
            await asyncio.wait_for(task, 60)


def url(master: Master, user: str) -> str:
    return f"ws://127.0.0.1:{master.acceptor.port}/ws?user_id={user}"


async def opened(master: Master, user: str) -> ClientConnection:
    ws = await connect(url(master, user), open_timeout=10)
    assert (await recv_json(ws))["type"] == "welcome"
    return ws


async def status_of(master: Master, user: str) -> int:
    with pytest.raises(InvalidStatus) as refused:
        await connect(url(master, user), open_timeout=10)
    return refused.value.response.status_code


async def echoes(ws: ClientConnection) -> bool:
    try:
        await ws.send(json.dumps({"type": "echo", "data": 1}))
        answer: object = await recv_json(ws)
        return answer == {"type": "echo", "data": 1}
    except ConnectionClosed:
        return False


def test_workers_are_a_count_or_auto() -> None:
    assert worker_count("3") == 3
    assert worker_count("auto") >= 1
    for bad in ("0", "-1", "two", ""):
        with pytest.raises(ValueError, match="--workers must be a number of processes"):
            worker_count(bad)


@pytest.mark.asyncio
async def test_each_user_s_quota_is_exact_whichever_worker_it_lives_on() -> None:
    async with running_master(3, {"quota": {"max_managers_per_user": 20}}) as master:
        by_worker: dict[int, list[str]] = {0: [], 1: [], 2: []}  # two users on each worker
        for user in (f"user{n}" for n in range(10_000)):  # the route: a hash with a random key
            mine = by_worker[master.policy.owner(user)]
            if len(mine) < 2:
                mine.append(user)
            if all(len(each) == 2 for each in by_worker.values()):
                break
        users = [user for each in by_worker.values() for user in each]
        held = []
        for user in users:
            held += [await opened(master, user) for _ in range(20)]
            assert await status_of(master, user) == 429  # the 21st
        state = await master.backend.state()
        assert {u["user_id"]: u["used"] for u in every_user(state)} == dict.fromkeys(users, 20)
        assert sorted(u["worker"] for u in every_user(state)) == [0, 0, 1, 1, 2, 2]
        for each in every_user(state):
            assert each["worker"] == master.policy.owner(each["user_id"])
        assert [w["root"]["node_limit"] for w in state["workers"]] == [3334] * 3  # ceil(10000 / 3)
        for ws in held:
            await ws.close()


@pytest.mark.asyncio
async def test_a_killed_worker_frees_its_slots_leaves_the_others_alone_and_comes_back() -> None:
    async with running_master(3, {"quota": {"max_managers_per_user": 20}}) as master:
        users = [f"u{n}" for n in range(12)]
        held = {user: [await opened(master, user) for _ in range(3)] for user in users}
        victim = master.policy.owner("u0")
        dead_pid = master.seats[victim].pid
        before = (await master.backend.metrics_text()).decode()
        assert dead_pid is not None
        master.seats[victim].signal(signal.SIGKILL)
        for user, sockets in held.items():
            mine = master.policy.owner(user) == victim
            for ws in sockets:
                if mine:  # dropped at once
                    with pytest.raises(ConnectionClosed):
                        await asyncio.wait_for(ws.recv(), 5)
                else:
                    assert await echoes(ws), user
        async with asyncio.timeout(30):
            while not master.seats[victim].serving:
                await asyncio.sleep(0.05)
        assert master.seats[victim].pid != dead_pid and master.seats[victim].restarts == 1
        again = [await opened(master, "u0") for _ in range(20)]  # every slot free: 20 again
        assert await status_of(master, "u0") == 429
        after = (await master.backend.metrics_text()).decode()
        assert _admitted(after) >= _admitted(before) + 20  # never back
        assert "ws_supervisor_worker_restarts_total 1.0" in after
        for ws in again + [ws for sockets in held.values() for ws in sockets]:
            await ws.close()


def _admitted(text: str) -> float:
    for line in text.splitlines():
        if line.startswith('ws_supervisor_admissions_total{result="admitted"}'):
            return float(line.split()[1])
    raise AssertionError("no admissions sample")


@pytest.mark.asyncio
async def test_metrics_sum_the_workers_and_the_master_counts_its_hand_offs() -> None:
    async with running_master(2) as master:
        held = [await opened(master, f"m{n}") for n in range(7)]
        text = (await master.backend.metrics_text()).decode()
        assert "ws_supervisor_managers_active 7.0" in text
        assert "ws_supervisor_workers_up 2.0" in text
        assert 'ws_supervisor_handoffs_total{result="handed"} 7.0' in text
        for ws in held:
            await ws.close()


@pytest.mark.asyncio
async def test_a_push_reaches_the_user_on_its_worker() -> None:
    async with running_master(3) as master:
        ws = await opened(master, "pushed")
        answer = await master.backend.push("pushed", None, {"type": "note"})
        assert answer.as_json() == {"delivered": 1}
        assert await recv_json(ws) == {"type": "note"}
        await ws.close()


@pytest.mark.asyncio
async def test_a_worker_that_keeps_dying_stops_the_daemon() -> None:
    config = make_config(LOOPBACK)
    master = Master(
        config,
        2,
        authenticator=Authenticator.from_config(config.auth, config.profile, {}),
        admin_token=None,
        log_text=lambda _: None,
        restarts=(1, 60.0),
    )
    ready = asyncio.Event()
    task = asyncio.ensure_future(master.serve(on_ready=lambda _: ready.set()))
    await asyncio.wait_for(ready.wait(), 60)
    master.seats[1].signal(signal.SIGKILL)
    async with asyncio.timeout(30):
        while master.seats[1].restarts < 1 or not master.seats[1].serving:
            await asyncio.sleep(0.05)
    master.seats[1].signal(signal.SIGKILL)
    with pytest.raises(WorkerFailed, match="worker 1 ended more than 1 times in 60s"):
        await asyncio.wait_for(task, 60)
    assert all(seat.process is None or seat.process.returncode is not None for seat in master.seats)
