"""The daemon in-process: what it refuses to start with, its reload, its dump and its stop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import attrs
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from supervisor.config.load import load_config, parse_config
from supervisor.daemon import Daemon, environment_issues, restart_only_changes
from supervisor.errors import ConfigError
from tests.helpers import bearer_status, make_config
from tests.integration.harness import ROOT, loopback_config, open_ws, recv_json, ws_url

pytestmark = pytest.mark.timeout(60)

SECRET = {"WSS_JWT_SECRET": "s" * 32}
EVERY_PROBLEM = {
    "profile": "production",
    "auth": {"mode": "query"},
    "admin": {"host": "0.0.0.0"},
    "server": {"app": "tests.apps.nowhere:App"},
}


def config_file(tmp_path: Path, **values: object) -> Path:
    """The ci profile on ephemeral loopback ports, with ``values`` (``key=value``) set in it."""
    settings = {**values, "port": 0}
    lines = [
        f"{key} = {settings[key]}" if key in settings else line
        for line in (ROOT / "config" / "ci.toml").read_text().splitlines()
        for key in [line.split(" ", 1)[0]]
    ]
    path = tmp_path / "node.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


@contextlib.asynccontextmanager
async def serving(daemon: Daemon) -> AsyncIterator[Daemon]:
    """``daemon`` serving on this loop until the block ends, then stopped."""
    ready = asyncio.Event()
    task = asyncio.create_task(daemon.serve(on_ready=lambda _: ready.set()))
    waiter = asyncio.create_task(ready.wait())
    await asyncio.wait([task, waiter], timeout=20, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        waiter.cancel()
        task.result()
    try:
        yield daemon
    finally:
        daemon.request_stop()
        await asyncio.wait_for(task, 30)


async def refused_status(url: str) -> int | None:
    try:
        ws = await connect(url, open_timeout=5)
    except InvalidStatus as error:
        return error.response.status_code
    await ws.close()
    return None


# --- what serve refuses ---------------------------------------------------------------------


def test_environment_issues_names_every_problem_serve_would_refuse_with_its_path() -> None:
    issues = environment_issues(parse_config(EVERY_PROBLEM), env={})
    assert [issue.path for issue in issues] == [
        "auth.mode",
        "auth.secret_env",
        "admin.token_env",
        "server.app",
    ]
    assert "query auth is allowed only in the dev and ci profiles" in str(issues[0])
    assert "environment variable WSS_JWT_SECRET is not set" in str(issues[1])
    assert "'tests.apps.nowhere:App'" in str(issues[3])


def test_environment_issues_is_empty_when_every_secret_the_config_names_is_there() -> None:
    assert environment_issues(parse_config({"profile": "production"}), env=SECRET) == []
    off_loopback = parse_config(
        {"profile": "production", "admin": {"host": "0.0.0.0", "token_env": "ADMIN_TOKEN"}}
    )
    assert environment_issues(off_loopback, env={**SECRET, "ADMIN_TOKEN": "t0ken"}) == []
    assert [i.path for i in environment_issues(off_loopback, env=SECRET)] == ["admin.token_env"]
    assert environment_issues(make_config(), env={}) == []  # ci: query auth, loopback


@pytest.mark.parametrize(
    ("env", "state"),
    [({}, "is not set"), ({"ADMIN_TOKEN": ""}, "is empty"), ({"ADMIN_TOKEN": "  "}, "is empty")],
)
def test_an_admin_token_env_naming_an_unset_or_empty_variable_is_refused_even_on_loopback(
    env: dict[str, str], state: str
) -> None:
    config = make_config({"admin": {"host": "127.0.0.1", "token_env": "ADMIN_TOKEN"}})
    issues = environment_issues(config, env=env)
    assert [(i.path, i.message) for i in issues] == [
        (
            "admin.token_env",
            f"environment variable ADMIN_TOKEN {state}: the admin token it names is required",
        )
    ]
    with pytest.raises(ConfigError) as caught:
        Daemon(config, env=env)  # serve refuses what check-config reports: one reading
    assert [i.path for i in caught.value.issues] == ["admin.token_env"]


@pytest.mark.asyncio
async def test_a_daemon_whose_admin_token_is_set_answers_only_with_it() -> None:
    config = loopback_config({"admin": {"token_env": "ADMIN_TOKEN"}})
    async with serving(Daemon(config, env={"ADMIN_TOKEN": "t0ken"})) as daemon:
        url = f"http://127.0.0.1:{daemon.admin.port}/debug/state"
        assert await asyncio.to_thread(bearer_status, url) == 401
        assert await asyncio.to_thread(bearer_status, url, "t0ken") == 200


def test_a_daemon_in_an_environment_with_issues_is_refused_listing_them_all() -> None:
    with pytest.raises(ConfigError) as caught:
        Daemon(parse_config(EVERY_PROBLEM), env={})
    assert caught.value.source == "environment"
    assert [issue.path for issue in caught.value.issues] == [
        "auth.mode",
        "auth.secret_env",
        "admin.token_env",
        "server.app",
    ]


def test_a_node_id_is_the_configured_one_or_made_of_host_process_and_random_hex() -> None:
    named = Daemon(make_config({"server": {"node_id": "edge-1"}}), env={})
    assert named.node_id == "edge-1"
    made = [Daemon(make_config(), env={}).node_id for _ in range(2)]
    prefix = re.escape(f"{socket.gethostname()}-{os.getpid()}-")
    assert all(re.fullmatch(prefix + "[0-9a-f]{6}", node_id) for node_id in made), made
    assert made[0] != made[1]


# --- reload -------------------------------------------------------------------------------


def test_restart_only_changes_are_the_key_paths_a_reload_left_as_they_were() -> None:
    applied = make_config()
    reloaded = attrs.evolve(
        applied,
        limits=attrs.evolve(applied.limits, messages_per_second=50.0),
        timeouts=attrs.evolve(applied.timeouts, ping_interval=5.0),
    )
    assert restart_only_changes(applied, reloaded) == [
        "limits.messages_per_second",
        "timeouts.ping_interval",
    ]
    assert restart_only_changes(applied, applied) == []


@pytest.mark.asyncio
async def test_a_reload_applies_the_new_quota_live_and_names_what_waits_for_a_restart(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = config_file(tmp_path)
    async with serving(Daemon(load_config(path, env={}), config_path=path, env={})) as daemon:
        first = await open_ws(ws_url(daemon))
        config_file(tmp_path, max_managers_per_user=1, messages_per_second=50.0, ping_interval=5.0)
        with caplog.at_level(logging.INFO, logger="supervisor.daemon"):
            assert await daemon.reload() is True
        assert daemon.config.quota.max_managers_per_user == 1
        assert daemon.config.limits.messages_per_second == 100000.0  # waits for a restart
        assert daemon.config.timeouts.ping_interval == 1.0  # so does the keepalive
        assert await refused_status(ws_url(daemon)) == 429
        assert first.state.name == "OPEN"  # nothing dropped by the reload
        await first.close()
    assert (
        "reload: limits.messages_per_second, timeouts.ping_interval apply at the next restart"
        in caplog.messages
    )
    assert "reload applied: max_managers_per_user=1" in caplog.messages


@pytest.mark.asyncio
async def test_a_reload_of_a_bad_file_is_rejected_and_the_running_config_kept(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = config_file(tmp_path)
    async with serving(Daemon(load_config(path, env={}), config_path=path, env={})) as daemon:
        before = daemon.config
        config_file(tmp_path, max_managers_per_user='"three"')
        with caplog.at_level(logging.ERROR, logger="supervisor.daemon"):
            assert await daemon.reload() is False
        assert daemon.config is before
    [rejected] = caplog.messages
    assert rejected.startswith("reload rejected, keeping the running config: ")
    assert "quota.max_managers_per_user" in rejected


@pytest.mark.asyncio
async def test_a_daemon_started_without_a_file_has_nothing_to_reload() -> None:
    async with serving(Daemon(loopback_config(), env={})) as daemon:
        before = daemon.config
        assert await daemon.reload() is False
        assert daemon.config is before


# --- dump and stop ------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_dump_logs_the_tree_s_state_and_every_thread_s_stack(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with serving(Daemon(loopback_config(), env={})) as daemon:
        ws = await open_ws(ws_url(daemon, user="dora"))
        with caplog.at_level(logging.WARNING, logger="supervisor.daemon"):
            await daemon.dump()
        await ws.close()
    [state] = [m for m in caplog.messages if m.startswith("state dump: ")]
    assert '"user_id": "dora"' in state
    stacks = [m for m in caplog.messages if m.startswith("thread ")]
    assert any(m.startswith("thread MainThread") and "test_daemon.py" in m for m in stacks)


@pytest.mark.asyncio
async def test_the_python_push_reaches_the_users_connections_and_answers_what_it_reached() -> None:
    async with serving(Daemon(loopback_config(), env={})) as daemon:
        ws = await open_ws(ws_url(daemon, user="pia"))
        answer = await daemon.push("pia", None, {"hello": "pia"})
        assert (answer.delivered, answer.nodes, answer.cluster) == (1, {daemon.node_id: 1}, "none")
        assert await recv_json(ws) == {"hello": "pia"}
        await ws.close()


@pytest.mark.asyncio
async def test_a_stopped_daemon_closed_its_connections_with_1001_and_listens_no_more() -> None:
    async with serving(Daemon(loopback_config(), env={})) as daemon:
        ws = await open_ws(ws_url(daemon))
        ports = (daemon.front.port, daemon.admin.port)
        daemon.request_stop()
        with contextlib.suppress(Exception):
            while True:
                await recv_json(ws)
        assert ws.close_code == 1001
    assert daemon.readiness.evaluate() == (False, ["draining"])
    assert not daemon.tree.running
    for port in ports:
        with pytest.raises(OSError):
            await asyncio.open_connection("127.0.0.1", port)
