"""A minimal Chrome DevTools Protocol driver over the ``websockets`` client (no other dependency).

    async with Browser.launch() as browser:
        page = await browser.new_page()
        await page.navigate("http://127.0.0.1:8766/ui")
        assert await page.evaluate("document.title") == "ws-supervisor"
        await page.screenshot(Path("shot.png"))

One headless Chromium per :class:`Browser`, in a fresh user-data-dir (also its HOME and
XDG dirs, so nothing is written to the real home), in its own process group, on an
ephemeral DevTools port read from ``DevToolsActivePort``. Every CDP call has a timeout.
On exit: ``Browser.close``, then SIGTERM/SIGKILL of the process group, then any process
still naming the user-data-dir; the directory is removed. The browser may only reach
loopback: other hosts go to a dead proxy and resolve to nothing, and every page request
to another host is failed by the ``Fetch`` domain and recorded in :attr:`Page.blocked`.

Everything runs on the caller's event loop: one reader task per browser hands each
answer to its command and each event to the page it belongs to.

The browser is Debian's ``chromium`` package, run as ``/usr/lib/chromium/chromium``
(the ``/usr/bin/chromium`` wrapper adds Debian's own flags, extensions and API keys).
As root it needs ``--no-sandbox``: acceptable for a test browser that loads only our own
page on loopback.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import os
import shutil
import signal
import tempfile
import time
import urllib.parse
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

CHROMIUM = os.environ.get("CDP_CHROMIUM", "/usr/lib/chromium/chromium")  # not the /usr/bin wrapper
LOOPBACK = {"127.0.0.1", "localhost", "[::1]", "::1"}
FLAGS = [
    "--headless=new",
    "--no-sandbox",  # root cannot use the setuid/namespace sandbox: test machines only
    "--disable-gpu",
    "--disable-dev-shm-usage",  # /tmp instead of /dev/shm (small in containers)
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--disable-crash-reporter",
    "--disable-breakpad",
    "--disable-features=Translate,OptimizationHints,MediaRouter,AutofillServerCommunication",
    "--metrics-recording-only",
    "--password-store=basic",
    "--use-mock-keychain",
    "--mute-audio",
    "--hide-scrollbars",
    # nothing but loopback, even from the browser process itself:
    "--proxy-server=http://127.0.0.1:9",  # a dead proxy; loopback bypasses proxies implicitly
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE localhost , EXCLUDE 127.0.0.1",
    "--remote-debugging-address=127.0.0.1",
    "--remote-debugging-port=0",
]


class CDPError(RuntimeError):
    """A CDP command failed, or the page threw."""


class Connection:
    """One websocket to the browser endpoint; commands by id, events to listeners."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._listeners: list[Callable[[dict[str, Any]], None]] = []
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                message = json.loads(raw)
                if "id" in message:
                    future = self._pending.pop(message["id"], None)
                    if future is not None and not future.done():
                        if "error" in message:
                            future.set_exception(CDPError(json.dumps(message["error"])))
                        else:
                            future.set_result(message.get("result", {}))
                else:
                    for listener in list(self._listeners):
                        listener(message)
        finally:
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(CDPError("the DevTools connection closed"))

    async def send(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        *,
        session: str | None = None,
        timeout: float = 10.0,
    ) -> Any:
        message: dict[str, Any] = {"id": next(self._ids), "method": method, "params": params or {}}
        if session is not None:
            message["sessionId"] = session
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[message["id"]] = future
        await self.ws.send(json.dumps(message))
        try:
            async with asyncio.timeout(timeout):
                return await future
        except TimeoutError:
            raise CDPError(f"{method}: no answer within {timeout:g}s") from None
        finally:
            self._pending.pop(message["id"], None)

    def listen(self, listener: Callable[[dict[str, Any]], None]) -> Callable[[], None]:
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    async def close(self) -> None:
        await self.ws.close()
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._reader


class Page:
    """One attached page target (flattened session on the browser connection)."""

    def __init__(self, connection: Connection, session: str) -> None:
        self.cdp, self.session = connection, session
        self.requests: list[str] = []  # every URL the page asked for
        self.blocked: list[str] = []  # requests to another host: failed, never sent
        self.problems: list[str] = []  # console errors, exceptions, CSP violations
        self.responses: dict[str, tuple[int, dict[str, str]]] = {}  # url -> (status, headers)
        self._events: dict[str, list[asyncio.Future[dict[str, Any]]]] = {}
        self._tasks: set[asyncio.Future[Any]] = set()
        # canned answers: URL path -> (status, JSON-able body), for shapes a daemon cannot make yet
        self.canned: dict[str, tuple[int, Any]] = {}
        connection.listen(self._on_event)

    async def send(
        self, method: str, params: dict[str, Any] | None = None, timeout: float = 10.0
    ) -> Any:
        return await self.cdp.send(method, params, session=self.session, timeout=timeout)

    async def setup(self, width: int, height: int) -> None:
        for domain in ("Page", "Runtime", "Log", "Network"):
            await self.send(f"{domain}.enable")
        await self.send("Fetch.enable", {"patterns": [{"urlPattern": "*"}]})
        await self.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
        )

    def _on_event(self, message: dict[str, Any]) -> None:
        if message.get("sessionId") != self.session:
            return
        method, params = message["method"], message.get("params", {})
        for future in self._events.pop(method, []):
            if not future.done():
                future.set_result(params)
        if method == "Fetch.requestPaused":
            url = params["request"]["url"]
            host = urllib.parse.urlsplit(url).hostname or ""
            allowed = host in LOOPBACK or url.startswith(("data:", "blob:", "about:"))
            if not allowed:
                self.blocked.append(url)
            command = "Fetch.continueRequest" if allowed else "Fetch.failRequest"
            extra: dict[str, Any] = {} if allowed else {"errorReason": "BlockedByClient"}
            canned = self.canned.get(urllib.parse.urlsplit(url).path) if allowed else None
            if canned is not None:
                body = base64.b64encode(json.dumps(canned[1]).encode()).decode()
                command, extra = (
                    "Fetch.fulfillRequest",
                    {
                        "responseCode": canned[0],
                        "responseHeaders": [{"name": "Content-Type", "value": "application/json"}],
                        "body": body,
                    },
                )
            task = asyncio.ensure_future(
                self.send(command, {"requestId": params["requestId"], **extra})
            )
            self._tasks.add(task)  # keep a reference until it is done
            task.add_done_callback(self._settled)
        elif method == "Network.requestWillBeSent":
            self.requests.append(params["request"]["url"])
        elif method == "Network.responseReceived":
            response = params["response"]
            self.responses[response["url"]] = (response["status"], response.get("headers", {}))
        elif method == "Runtime.exceptionThrown":
            self.problems.append("exception: " + params["exceptionDetails"].get("text", "?"))
        elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            self.problems.append(
                "console: " + " ".join(str(a.get("value")) for a in params["args"])
            )
        elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
            entry = params["entry"]
            self.problems.append(
                f"log ({entry.get('source')}): {entry.get('text')} {entry.get('url', '')}"
            )

    def _settled(self, task: asyncio.Future[Any]) -> None:
        """A request's answer was sent, or the browser went away first (nothing to report)."""
        self._tasks.discard(task)
        if not task.cancelled():
            task.exception()

    def expect(self, method: str) -> asyncio.Future[dict[str, Any]]:
        """A future for the next ``method`` event; create it *before* causing the event."""
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._events.setdefault(method, []).append(future)
        return future

    async def navigate(self, url: str, timeout: float = 10.0) -> None:
        loaded = self.expect("Page.loadEventFired")
        result = await self.send("Page.navigate", {"url": url}, timeout)
        if result.get("errorText"):
            raise CDPError(f"navigate {url}: {result['errorText']}")
        if "loaderId" not in result:  # same-document (fragment) navigation: no load event
            return
        async with asyncio.timeout(timeout):
            await loaded

    async def evaluate(self, expression: str, timeout: float = 10.0) -> Any:
        """Evaluate in the page (promises awaited); the value, JSON-serialized by the page."""
        result = await self.send(
            "Runtime.evaluate",
            {
                "expression": expression,
                "awaitPromise": True,
                "returnByValue": True,
                "userGesture": True,
                "timeout": int(timeout * 1000),
            },
            timeout + 1,
        )
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text")
            raise CDPError(f"page threw: {text}")
        return result["result"].get("value")

    async def wait_for(self, expression: str, timeout: float = 10.0, interval: float = 0.05) -> Any:
        """Poll ``expression`` until truthy; its value. A DOM node comes back as {}: use ``!!``."""
        deadline = time.monotonic() + timeout
        while True:
            value = await self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout:g}s waiting for: {expression}")
            await asyncio.sleep(interval)

    async def insert_text(self, text: str) -> None:
        """Type into the focused element, as a user would (input events fire)."""
        await self.send("Input.insertText", {"text": text})

    async def screenshot(self, path: Path, full_page: bool = True) -> Path:
        params: dict[str, Any] = {"format": "png"}
        if full_page:
            metrics = await self.send("Page.getLayoutMetrics")
            size = metrics["cssContentSize"]
            params["clip"] = {
                "x": 0,
                "y": 0,
                "width": size["width"],
                "height": size["height"],
                "scale": 1,
            }
            params["captureBeyondViewport"] = True
        data = (await self.send("Page.captureScreenshot", params, timeout=20))["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path


class Browser:
    """A headless Chromium and the DevTools connection to it."""

    def __init__(self, proc: asyncio.subprocess.Process, home: Path, cdp: Connection) -> None:
        self.proc, self.home, self.cdp = proc, home, cdp
        self.version: dict[str, Any] = {}
        self.started_in = 0.0

    @classmethod
    @contextlib.asynccontextmanager
    async def launch(cls, *, timeout: float = 15.0) -> AsyncIterator[Browser]:
        if not Path(CHROMIUM).exists():
            raise CDPError(
                f"no browser at {CHROMIUM}: install Debian's chromium package "
                "(scripts/test installs it when missing)"
            )
        started = time.monotonic()
        home = Path(tempfile.mkdtemp(prefix="cdp-chromium-"))
        profile = home / "profile"
        env = {
            "PATH": "/usr/bin:/bin",
            "HOME": str(home),
            "TMPDIR": str(home),
            "XDG_CONFIG_HOME": str(home / "config"),
            "XDG_CACHE_HOME": str(home / "cache"),
            "LANG": "C.UTF-8",
            "TZ": os.environ.get("TZ", "UTC"),
        }
        log = (home / "chromium.log").open("wb")
        proc = await asyncio.create_subprocess_exec(
            CHROMIUM,
            *FLAGS,
            f"--user-data-dir={profile}",
            "about:blank",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            env=env,
            start_new_session=True,  # its own process group: one signal reaches every child
        )
        log.close()
        browser: Browser | None = None
        try:
            port_file = profile / "DevToolsActivePort"
            deadline = time.monotonic() + timeout
            while not (port_file.exists() and len(port_file.read_text().splitlines()) >= 2):
                if proc.returncode is not None or time.monotonic() > deadline:
                    tail = (home / "chromium.log").read_text(errors="replace")[-2000:]
                    raise CDPError(f"chromium did not start (exit {proc.returncode}): {tail}")
                await asyncio.sleep(0.02)
            port, path = port_file.read_text().splitlines()[:2]
            ws = await connect(
                f"ws://127.0.0.1:{port}{path}",
                open_timeout=timeout,
                max_size=None,
                compression=None,
                ping_interval=None,  # screenshots are MBs; CDP needs no pings
            )
            browser = cls(proc, home, Connection(ws))
            browser.version = await browser.cdp.send("Browser.getVersion")
            browser.started_in = time.monotonic() - started
            yield browser
        finally:
            await cls._shutdown(proc, home, browser)

    async def new_page(self, width: int = 1280, height: int = 900) -> Page:
        targets = (await self.cdp.send("Target.getTargets"))["targetInfos"]
        page_id = next(t["targetId"] for t in targets if t["type"] == "page")
        attached = await self.cdp.send(
            "Target.attachToTarget", {"targetId": page_id, "flatten": True}
        )
        page = Page(self.cdp, attached["sessionId"])
        await page.setup(width, height)
        return page

    @staticmethod
    async def _shutdown(
        proc: asyncio.subprocess.Process, home: Path, browser: Browser | None
    ) -> None:
        if browser is not None:
            with contextlib.suppress(Exception):
                await browser.cdp.send("Browser.close", timeout=3)
            with contextlib.suppress(Exception):
                await browser.cdp.close()
        for sig in (None, signal.SIGTERM, signal.SIGKILL):
            if sig is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, sig)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(3):
                    await proc.wait()
                    break
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # helpers left in the group (zygote, crashpad)
        for pid in leftovers(home):  # anything that left the group but still names our profile
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(home, ignore_errors=True)


def leftovers(home: Path) -> list[int]:
    """Pids whose command line names ``home`` (our user-data-dir): must be none after exit."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if str(home).encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
    return found
