"""Embedding ws-supervisor into an existing websockets server."""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from actors.codes import ServerCloseCode
from actors.errors import AdmissionRefused
from actors.tree import SupervisionTree
from supervisor.front.embed import serve_supervised, supervise
from tests.helpers import make_config
from tests.integration.harness import ROOT, free_port, python

pytestmark = pytest.mark.asyncio

EXAMPLE = ROOT / "docs" / "examples" / "embedded_server.py"


@pytest_asyncio.fixture
async def tree() -> AsyncIterator[SupervisionTree]:
    loop = asyncio.get_running_loop()
    tree = SupervisionTree(make_config({"quota": {"max_managers_per_user": 2}}))
    await loop.run_in_executor(None, tree.start)
    yield tree
    await loop.run_in_executor(None, tree.stop)


async def test_the_documented_example_server_runs_and_echoes_under_supervision() -> None:
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        python(), str(EXAMPLE), str(port), cwd=ROOT, stdout=subprocess.PIPE
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 20)
        assert line.decode().strip() == f"listening on {port}"
        async with connect(f"ws://127.0.0.1:{port}/?user=alice") as ws:
            welcome = json.loads(await ws.recv())
            assert (welcome["type"], welcome["user_id"]) == ("welcome", "alice")
            await ws.send(json.dumps({"type": "echo", "data": 42}))
            assert json.loads(await ws.recv()) == {"type": "echo", "data": 42}
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), 20)


async def test_a_wrapped_handler_gets_the_same_quota_and_refuses_with_1013(
    tree: SupervisionTree,
) -> None:
    async def handler(connection: ServerConnection) -> None:
        await serve_supervised(tree, connection, "alice")

    async with serve(handler, "127.0.0.1", 0, ping_interval=None) as server:
        url = f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/"
        first, second, third = [await connect(url) for _ in range(3)]
        for ws in (first, second):
            assert json.loads(await ws.recv())["type"] == "welcome"
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(third.recv(), 5)
        assert third.close_code == ServerCloseCode.TRY_AGAIN_LATER
        assert tree.ledger.usage("alice") == 2
        await first.close()
        await second.close()
    deadline = asyncio.get_running_loop().time() + 5
    while tree.ledger.usage("alice") and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.01)
    assert tree.ledger.usage("alice") == 0


async def test_the_context_manager_holds_a_slot_for_exactly_as_long_as_the_block(
    tree: SupervisionTree,
) -> None:
    seen: list[int] = []
    refused: list[str] = []

    async def handler(connection: ServerConnection) -> None:
        try:
            async with supervise(tree, connection, "bob") as handle:
                seen.append(tree.ledger.usage("bob"))
                async for message in connection:
                    if isinstance(message, str):
                        handle.deliver(message)
        except AdmissionRefused as error:
            refused.append(error.reason)

    async with serve(handler, "127.0.0.1", 0, ping_interval=None) as server:
        url = f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/"
        async with connect(url) as ws:
            await ws.send("raw text goes to the tree's handler")
            assert await asyncio.wait_for(ws.recv(), 5) == "raw text goes to the tree's handler"
    assert seen == [1]
    assert refused == []
    deadline = asyncio.get_running_loop().time() + 5
    while tree.ledger.usage("bob") and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.01)
    assert tree.ledger.usage("bob") == 0
