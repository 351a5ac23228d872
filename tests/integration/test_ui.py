"""The live page (``/ui``) in a real browser, against a real daemon with real clients.

Each test runs a daemon on its own event loop (ci profile, ephemeral loopback ports,
an admin token), opens real WebSocket clients to it, and drives a headless Chromium
(Debian's ``chromium``) over the DevTools protocol (:mod:`tests.integration.cdp`). The
page refreshes every second here (``#every=1``). Every browser test also checks that
the page logged no error, broke no Content-Security-Policy rule and asked nothing of
any origin but the admin listener. Screenshots go to the ``screenshots`` folder.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import urllib.request
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection

from supervisor.admin.dump import every_user
from supervisor.daemon import Daemon
from tests.cluster.redis_server import RedisServer
from tests.integration.cdp import Browser, Page
from tests.integration.conftest import screenshot_written
from tests.integration.harness import CLI, ROOT, DaemonProcess, open_client, running_daemon, ws_url
from tests.integration.uipage import (
    cells,
    connections,
    next_refreshes,
    search,
    text_of,
    toggle,
    visible_users,
)

pytestmark = pytest.mark.asyncio

TOKEN = "ui-test-token"
ENV = {"UI_TEST_ADMIN_TOKEN": TOKEN}
OVERRIDES: dict[str, dict[str, Any]] = {
    "admin": {"token_env": "UI_TEST_ADMIN_TOKEN"},
    "quota": {"max_managers_per_user": 10},
    "thresholds": {"critical_action": "none", "emergency_action": "none"},  # nothing is shed
}
READY = "document.body.dataset.state === 'ok'"
PNG = b"\x89PNG\r\n\x1a\n"


@contextlib.asynccontextmanager
async def daemon_with_token(
    extra: Mapping[str, Mapping[str, Any]] | None = None,
) -> AsyncIterator[Daemon]:
    """A real daemon with the admin token, quota 10, nothing shed; ``extra`` on top."""
    overrides = {section: dict(values) for section, values in OVERRIDES.items()}
    for section, values in (extra or {}).items():
        overrides.setdefault(section, {}).update(values)
    async with running_daemon(overrides, env=ENV) as daemon:
        yield daemon


def ui(daemon: Daemon, token: str | None = TOKEN) -> str:
    fragment = f"#token={token}&every=1" if token else "#every=1"
    return f"http://127.0.0.1:{daemon.admin.port}/ui{fragment}"


Client = tuple[ClientConnection, dict[str, Any]]  # a connection and its welcome frame


@contextlib.asynccontextmanager
async def clients(daemon: Daemon, **counts: int) -> AsyncIterator[dict[str, list[Client]]]:
    """``counts`` real client connections per user, open for the block (closing twice is fine)."""
    opened: dict[str, list[Client]] = {}
    try:
        for user, count in counts.items():
            for _ in range(count):
                opened.setdefault(user, []).append(await open_client(ws_url(daemon, user)))
        yield opened
    finally:
        await asyncio.gather(*(ws.close() for held in opened.values() for ws, _ in held))


async def opened(browser: Browser, daemon: Daemon, width: int = 1280, height: int = 900) -> Page:
    """A page on the daemon's /ui with the token, once it has drawn its first data."""
    page = await browser.new_page(width, height)
    await page.navigate(ui(daemon))
    await page.wait_for(READY)
    return page


def clean(page: Page, daemon: Daemon, *, statuses: tuple[int, ...] = ()) -> None:
    """No error, no CSP violation, no request to another origin.

    An answer with one of ``statuses`` (a 401, a 503 from /readyz) is the test's own doing:
    the browser logs it as a failed load, which is not a problem of the page.
    """
    answered = tuple(f"the server responded with a status of {status} " for status in statuses)
    problems = [p for p in page.problems if not any(a in p for a in answered)]
    assert problems == []
    origin = f"http://127.0.0.1:{daemon.admin.port}/"
    assert page.blocked == []
    assert all(url.startswith(origin) for url in page.requests), page.requests


async def test_the_page_lists_the_users_and_their_connections(
    browser: Browser, screenshots: Path
) -> None:
    async with (
        daemon_with_token() as daemon,
        clients(daemon, alice=2, bob=1, carol=5, dave=8, erin=9) as welcomes,
    ):
        page = await opened(browser, daemon)
        assert "token" not in await page.evaluate("location.href")  # taken out of the address
        assert await visible_users(page) == ["erin", "dave", "carol", "alice", "bob"]  # by usage
        levels = await page.evaluate(
            "Object.fromEntries([...document.querySelectorAll('tbody.user')].map(b =>"
            " [b.dataset.user, b.querySelector('.lvl').className]))"
        )
        assert levels == {
            "alice": "lvl lvl-ok",
            "bob": "lvl lvl-ok",
            "carol": "lvl lvl-warning",
            "dave": "lvl lvl-critical",
            "erin": "lvl lvl-emergency",
        }
        assert (await cells(page, "dave"))[2:6] == ["8/10", "critical", "0", "0"]
        assert await text_of(page, "node-slots") == "25 / 10000"
        assert await text_of(page, "node-users") == "5"
        assert await text_of(page, "node-levels") == "ok 2 warning 1 critical 1 emergency 1 "
        assert await text_of(page, "node-ready") == "ready"
        assert (await text_of(page, "node-ledger")).startswith("memory, 25 slots held")
        newest = await page.evaluate("document.querySelector('#alert-list li').textContent")
        assert "user erin" in newest and newest.endswith("critical → emergency"), newest
        talker, said = welcomes["alice"][0]
        for n in range(2):  # frames in and out, counted by the connection's manager
            await talker.send(json.dumps({"type": "echo", "data": n}))
            assert json.loads(await talker.recv())["type"] == "echo"
        await next_refreshes(page, 2)
        assert await toggle(page, "alice") and await toggle(page, "erin")
        assert sorted(await connections(page, "alice")) == sorted(
            welcome["websocket_id"] for _, welcome in welcomes["alice"]
        )
        rows = await page.evaluate(
            "[...document.querySelectorAll('tbody.user[data-user=alice] tr.conn')]"
            ".map(r => [...r.cells].map(c => c.textContent))"
        )
        by_id = {row[0]: row for row in rows}
        for _, welcome in welcomes["alice"]:
            _, thread, state, _age, _idle, frames_in, frames_out = by_id[welcome["websocket_id"]][
                :7
            ]
            frames = "2" if welcome is said else "0"
            assert (thread, state, frames_in, frames_out) == (
                welcome["thread_id"],
                "connected",
                frames,
                frames,
            )
        await page.evaluate("document.getElementById('alerts').open = true")  # in the picture
        shot = screenshot_written(await page.screenshot(screenshots / "ui-users.png"))
        assert shot.read_bytes()[:8] == PNG
        for order, expected in (
            ("user", ["alice", "bob", "carol", "dave", "erin"]),
            ("level", ["erin", "dave", "carol", "alice", "bob"]),
        ):
            await page.evaluate(
                f"(() => {{ const s = document.getElementById('sort'); s.value = '{order}';"
                " s.dispatchEvent(new Event('change')); })()"
            )
            assert await visible_users(page) == expected, order
        status, headers = page.responses[f"http://127.0.0.1:{daemon.admin.port}/ui"]
        assert status == 200 and "default-src 'none'" in headers["Content-Security-Policy"]
        clean(page, daemon)


async def test_a_closed_connection_disappears_at_the_next_refresh(
    browser: Browser, screenshots: Path
) -> None:
    fillers = {f"ann{n:02}": 1 for n in range(14)}
    async with (
        daemon_with_token() as daemon,
        clients(daemon, alice=3, bob=1, **fillers) as welcomes,
    ):
        page = await opened(browser, daemon, 1280, 500)
        await search(page, "a")  # the reader's place: a search, two open rows, a scroll
        assert "bob" not in await visible_users(page)
        assert await toggle(page, "alice") and await toggle(page, "ann13")
        await page.evaluate("window.scrollTo(0, 250)")
        top = (
            "(() => { const r = document.elementFromPoint(300, 5).closest('tr');"
            " return [r.dataset.websocket || r.cells[1].textContent,"
            " r.getBoundingClientRect().top]; })()"
        )
        place = (await page.evaluate("scrollY"), await page.evaluate(top))
        assert place[0] == 250

        first, welcome = welcomes["ann13"][0]  # below the top of the view
        assert await connections(page, "ann13") == [welcome["websocket_id"]]
        second, again = await open_client(ws_url(daemon, "ann13"))
        await next_refreshes(page, 2)
        assert len(await connections(page, "ann13")) == 2
        await first.close()
        await next_refreshes(page, 2)  # one refresh that started after the close
        assert await connections(page, "ann13") == [again["websocket_id"]]
        assert (await page.evaluate("scrollY"), await page.evaluate(top)) == place
        assert await page.evaluate("document.getElementById('search').value") == "a"
        assert await page.evaluate(
            "['alice', 'ann13'].every(u =>"
            " !document.querySelector(`tbody.user[data-user=${u}] tr.conns`).hidden)"
        )
        screenshot_written(await page.screenshot(screenshots / "ui-closed.png", full_page=False))
        await second.close()
        clean(page, daemon)


async def test_search_finds_a_user(browser: Browser) -> None:
    async with daemon_with_token() as daemon, clients(daemon, alice=1, albert=2, bob=1, carol=1):
        page = await opened(browser, daemon)
        await search(page, "AL")  # case-insensitive, anywhere in the id
        assert await visible_users(page) == ["albert", "alice"]
        await search(page, "bob")
        assert await visible_users(page) == ["bob"]
        await next_refreshes(page, 1)
        assert await visible_users(page) == ["bob"]  # still filtered after a refresh
        await search(page, "zzz")
        assert await visible_users(page) == []
        assert await text_of(page, "shown") == "0 of 4 users match"
        await search(page, "")
        assert len(await visible_users(page)) == 4
        clean(page, daemon)


async def test_a_wrong_token_gets_no_data(browser: Browser, screenshots: Path) -> None:
    async with daemon_with_token() as daemon, clients(daemon, alice=2, bob=1):
        page = await browser.new_page()
        for token in ("wrong-" + TOKEN, None):  # a wrong one, then none at all
            await page.navigate("about:blank")
            await page.navigate(ui(daemon, token))
            await page.wait_for("document.body.dataset.state === 'unauthorized'")
            assert await page.evaluate("document.querySelectorAll('tbody.user').length") == 0
            text = await page.evaluate("document.body.innerText")
            assert "alice" not in text and "ws_" not in text and "thread_" not in text
            assert await page.evaluate("!document.getElementById('login').hidden")
        state_url = f"http://127.0.0.1:{daemon.admin.port}/debug/state"
        assert page.responses[state_url][0] == 401
        screenshot_written(await page.screenshot(screenshots / "ui-wrong-token.png"))
        generation = await page.evaluate("document.body.dataset.generation")
        await asyncio.sleep(1.5)  # refused: it stops asking
        assert await page.evaluate("document.body.dataset.generation") == generation
        await page.evaluate("document.getElementById('token').focus()")  # the right one, typed
        await page.insert_text(TOKEN)
        await page.evaluate("document.getElementById('login').requestSubmit()")
        await page.wait_for(READY)
        assert await visible_users(page) == ["alice", "bob"]
        clean(page, daemon, statuses=(401,))


async def test_readiness_names_the_trigger_that_holds(browser: Browser) -> None:
    async with daemon_with_token() as daemon:
        page = await opened(browser, daemon)
        assert await text_of(page, "node-ready") == "ready"
        daemon.readiness.set_draining(True)
        await page.wait_for("document.getElementById('node-ready').textContent.includes('drain')")
        assert await page.evaluate(
            "[...document.querySelectorAll('#node-ready li')].map(li => li.textContent)"
        ) == ["draining"]
        assert "not ready (HTTP 503)" in await text_of(page, "node-ready")
        daemon.readiness.set_draining(False)
        await page.wait_for("document.getElementById('node-ready').textContent === 'ready'")
        clean(page, daemon, statuses=(503,))


async def test_it_says_when_it_cannot_reach_the_daemon(browser: Browser, screenshots: Path) -> None:
    async with daemon_with_token() as daemon, clients(daemon, alice=1):
        page = await opened(browser, daemon)
        await daemon.admin.close()  # the admin listener goes away
        await page.wait_for("document.body.dataset.state === 'unreachable'", timeout=10)
        status = await text_of(page, "status")
        assert status.startswith("cannot reach the daemon") and "showing data from" in status
        assert await visible_users(page) == ["alice"]  # the last data stays, greyed
        screenshot_written(await page.screenshot(screenshots / "ui-unreachable.png"))


async def test_the_policy_stops_an_injected_script_and_a_request_to_another_host(
    browser: Browser,
) -> None:
    async with daemon_with_token() as daemon:
        page = await opened(browser, daemon)
        await page.evaluate(
            "(() => { const s = document.createElement('script');"
            " s.textContent = 'window.injected = true'; document.head.append(s); })()"
        )
        assert await page.evaluate("window.injected === undefined")
        refused = await page.evaluate(
            "fetch('http://ui-test.invalid/').then(() => 'fetched', e => e.name)"
        )
        assert refused == "TypeError"
        await page.wait_for("true")  # let the browser report both
        assert any("Content Security Policy" in p for p in page.problems), page.problems
        assert page.blocked == []  # the policy refused it before the network guard saw it


async def test_with_the_redis_ledger_each_user_shows_their_slots_on_every_node(
    browser: Browser, redis_server: RedisServer, screenshots: Path
) -> None:
    def node(node_id: str) -> dict[str, dict[str, Any]]:
        return {
            "quota": {"backend": "redis"},
            "redis": {"url": redis_server.url, "timeout": 1.0},
            "server": {"node_id": node_id},
        }

    async with (
        daemon_with_token(node("node-a")) as here,
        daemon_with_token(node("node-b")) as there,
        clients(here, alice=2, bob=1),
        clients(there, alice=3, carol=1),
    ):
        page = await opened(browser, here)
        assert await visible_users(page) == ["alice", "bob"]  # the users this node serves
        assert (
            await page.evaluate(
                "getComputedStyle(document.querySelector('#user-table th.col-cluster')).display"
            )
            == "table-cell"
        )
        assert (await cells(page, "alice"))[2] == "2/10"
        assert (await cells(page, "alice"))[6] == "5/10"  # 2 here and 3 on node-b
        assert (await cells(page, "bob"))[6] == "1/10"
        assert (await text_of(page, "node-ledger")).startswith("redis, 3 slots held")
        assert await text_of(page, "node-id") == "node-a"
        screenshot_written(await page.screenshot(screenshots / "ui-redis.png"))
        clean(page, daemon=here)


def state_of(daemon: Daemon) -> dict[str, Any]:
    """``GET /debug/state`` with the token (blocking: call it off the loop)."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{daemon.admin.port}/debug/state",
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    with urllib.request.urlopen(request, timeout=5) as answer:
        state: dict[str, Any] = json.loads(answer.read())
        return state


async def test_with_several_workers_the_page_shows_every_worker_and_its_users(
    browser: Browser, screenshots: Path
) -> None:
    """The shape ``--workers`` gives (issue #23): each worker's real state in one answer.

    The browser is handed it for ``/debug/state``, built from the states of two real
    daemons, and one worker that did not answer (a real master's is the next test).
    """
    async with (
        daemon_with_token() as first,
        daemon_with_token() as second,
        clients(first, alice=2, bob=1),
        clients(second, alice=9, carol=1),
    ):
        loop = asyncio.get_running_loop()
        states = [await loop.run_in_executor(None, state_of, d) for d in (first, second)]
        workers = [{"worker_id": str(n), **state} for n, state in enumerate(states, 1)]
        workers.append({"worker_id": "3", "error": "no answer within 2s"})
        page = await browser.new_page()
        page.canned["/debug/state"] = (200, {"workers": workers})
        await page.navigate(ui(first))
        await page.wait_for(READY)
        assert await page.evaluate(
            "[...document.querySelectorAll('#worker-rows tr')].map(r =>"
            " [...r.cells].map(c => c.textContent))"
        ) == [
            ["1", "ok", "3 / 10000", "2", str(states[0]["root"]["threads"]), "memory"],
            ["2", "ok", "10 / 10000", "2", str(states[1]["root"]["threads"]), "memory"],
            ["3", "down", "", "0", "", "no answer within 2s"],
        ]
        assert await visible_users(page) == ["alice", "alice", "bob", "carol"]
        rows = await page.evaluate(
            "[...document.querySelectorAll('tbody.user')].map(b =>"
            " [b.dataset.user, b.querySelector('td.col-worker').textContent,"
            " b.querySelector('td.num').textContent.trim()])"
        )
        assert rows == [
            ["alice", "2", "9/10"],
            ["alice", "1", "2/10"],
            ["bob", "1", "1/10"],
            ["carol", "2", "1/10"],
        ]
        assert await text_of(page, "node-slots") == "13 / 20000"
        assert (await text_of(page, "node-id")).endswith("3 workers")
        screenshot_written(await page.screenshot(screenshots / "ui-workers.png"))
        clean(page, first)


@pytest.mark.timeout(120)
async def test_a_real_daemon_of_two_workers_shows_both_and_each_user_on_its_own(
    browser: Browser, screenshots: Path
) -> None:
    """``serve --workers 2`` itself: the page draws what its master answers for the workers."""
    argv = [CLI, "serve", "--config", str(ROOT / "config" / "ci.toml"), "--workers", "2"]
    proc = DaemonProcess(None, argv=argv)
    loop = asyncio.get_running_loop()
    held: list[Client] = []
    try:
        await loop.run_in_executor(None, proc.wait_ready, 60)
        where: dict[str, str] = {}
        while set(where.values()) != {"0", "1"}:  # the route is a keyed hash: users until both
            assert len(held) < 64
            held.append(await open_client(proc.url(f"user{len(held)}")))
            state = (await loop.run_in_executor(None, proc.get, "/debug/state"))[1]
            where = {u["user_id"]: str(u["worker"]) for u in every_user(state)}
        page = await browser.new_page()
        await page.navigate(f"{proc.admin}/ui#every=1")
        await page.wait_for(READY)
        workers = await page.evaluate(
            "[...document.querySelectorAll('#worker-rows tr')].map(r =>"
            " [...r.cells].map(c => c.textContent))"
        )
        assert [row[:2] for row in workers] == [["0", "ok"], ["1", "ok"]]
        assert sum(int(row[3]) for row in workers) == len(held)  # users per worker
        assert await visible_users(page) == sorted(where)
        rows = await page.evaluate(
            "[...document.querySelectorAll('tbody.user')].map(b =>"
            " [b.dataset.user, b.querySelector('td.col-worker').textContent])"
        )
        assert dict(rows) == where
        assert (await text_of(page, "node-id")).endswith("2 workers")
        screenshot_written(await page.screenshot(screenshots / "ui-real-workers.png"))
        assert page.problems == [] and page.blocked == []
    finally:
        await asyncio.gather(*(ws.close() for ws, _ in held))
        proc.kill()
