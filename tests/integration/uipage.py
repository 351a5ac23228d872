"""What a test asks of the /ui page, over the CDP driver (shared by the demo and the tests)."""

from __future__ import annotations

import json

from tests.integration.cdp import Page

VISIBLE_USERS = (
    "[...document.querySelectorAll('tbody.user:not([hidden])')].map(b => b.dataset.user)"
)


def q(text: str) -> str:
    """A JS string literal."""
    return json.dumps(text)


def user_body(user: str) -> str:
    """JS: the user's <tbody>."""
    return f"document.querySelector('tbody.user[data-user=' + CSS.escape({q(user)}) + ']')"


async def text_of(page: Page, element_id: str) -> str:
    """The text of the page's element with that id."""
    return str(await page.evaluate(f"document.getElementById({q(element_id)}).textContent"))


async def cells(page: Page, user: str) -> list[str]:
    """The text of each cell of the user's row: toggle, user, used, level, pool, restarts, ..."""
    texts: list[str] = await page.evaluate(
        f"[...{user_body(user)}.querySelector('tr.summary').cells].map(c => c.textContent.trim())"
    )
    return texts


async def visible_users(page: Page) -> list[str]:
    users: list[str] = await page.evaluate(VISIBLE_USERS)
    return users


async def connections(page: Page, user: str) -> list[str]:
    """The websocket ids listed under ``user`` (drawn only while the row is open)."""
    ids: list[str] = await page.evaluate(
        f"[...{user_body(user)}.querySelectorAll('tr.conn')].map(tr => tr.dataset.websocket)"
    )
    return ids


async def toggle(page: Page, user: str) -> bool:
    """Click the user's open/close button; whether the connections are now shown."""
    shown: bool = await page.evaluate(
        f"(() => {{ const b = {user_body(user)}; b.querySelector('button.open').click();"
        " return !b.querySelector('tr.conns').hidden; })()"
    )
    return shown


async def generation(page: Page) -> int:
    return int(await page.evaluate("Number(document.body.dataset.generation)"))


async def state(page: Page) -> str:
    return str(await page.evaluate("document.body.dataset.state"))


async def next_refreshes(page: Page, count: int = 2, timeout: float = 10.0) -> None:
    """Wait for ``count`` more completed refreshes: with 2, one started after this call."""
    start = await generation(page)
    await page.wait_for(f"Number(document.body.dataset.generation) >= {start + count}", timeout)


async def search(page: Page, text: str) -> None:
    """Clear the search box and type ``text`` into it, as a user would."""
    await page.evaluate(
        "(() => { const s = document.getElementById('search'); s.focus(); s.select(); })()"
    )
    await page.send(
        "Input.dispatchKeyEvent",
        {"type": "keyDown", "key": "Backspace", "code": "Backspace", "windowsVirtualKeyCode": 8},
    )
    await page.send(
        "Input.dispatchKeyEvent",
        {"type": "keyUp", "key": "Backspace", "code": "Backspace", "windowsVirtualKeyCode": 8},
    )
    if text:
        await page.insert_text(text)
