"""What the browser tests share: Debian's chromium through Playwright, a tiny
page server for the test pages, waiting on a page, artifacts.

Chromium is the system's (``/usr/bin/chromium``, ``apt-get install -y
chromium``), never one Playwright downloads. It runs headless with fake media
devices (a generated camera picture and a beep) and fake permission prompts,
and with loopback ICE candidates allowed: without
``--allow-loopback-in-peer-connection`` it offers none on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import mimetypes
import os
import ssl
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from playwright.async_api import Page

from kefu.media import MediaSettings
from tests.conftest import scaled

__all__ = [
    "ARTIFACTS",
    "CHROMIUM",
    "CHROMIUM_ARGS",
    "LIMIT",
    "MEDIA",
    "PAGES",
    "PageServer",
    "calls",
    "screenshot",
    "states",
    "wait_js",
]

CHROMIUM = os.environ.get("KEFU_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",  # tests run as root in CI
    "--disable-gpu",
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    "--allow-loopback-in-peer-connection",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    # a fake screen for getDisplayMedia, without a picker
    "--auto-select-desktop-capture-source=Entire screen",
    "--enable-usermedia-screen-capturing",
]
PAGES = Path(__file__).resolve().parent / "pages"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
#: The media of the plugin and of the Python visitors in these tests: the default
#: (loopback, the test pattern) at 320x240, 15 fps, without recording. Server, plugin,
#: hub and Python visitors share the test's one process and event loop, where every
#: stream is encoded: at 640x480 and 30 fps, with recording, a three-party call there
#: took 13 s to show the third member's video (4 s now). Recording is tested in tests/e2e.
MEDIA = MediaSettings(record=False, video_width=320, video_height=240, fps=15)
#: Every wait in a browser test is bounded by this many seconds (never a sleep).
LIMIT = scaled(15.0)


class PageServer:
    """A static HTTP server on 127.0.0.1 for ``tests/browser/pages``, plus a
    generated ``/config.js`` (``window.KEFU_TEST = {...}``). Its origin is
    ``http://127.0.0.1:<port>``; two servers are two origins.

    With ``tls`` (a server context) it serves https, its origin named ``name``
    (a test host the browser maps to 127.0.0.1); ``files`` adds paths served
    from elsewhere (``{"/imclient.js": ...}``)."""

    def __init__(
        self,
        root: Path = PAGES,
        config: dict[str, Any] | None = None,
        *,
        tls: ssl.SSLContext | None = None,
        name: str = "127.0.0.1",
        files: dict[str, Path] | None = None,
    ) -> None:
        self.root = root.resolve()
        self.config: dict[str, Any] = dict(config or {})
        self.tls = tls
        self.name = name
        self.files = dict(files or {})
        self.port = 0
        self.requests: list[str] = []
        self._server: asyncio.Server | None = None

    @property
    def origin(self) -> str:
        return f"{'https' if self.tls is not None else 'http'}://{self.name}:{self.port}"

    def url(self, path: str) -> str:
        return self.origin + path

    async def start(self) -> PageServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.tls)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def aclose(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> PageServer:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def _file(self, path: str) -> tuple[int, str, bytes]:
        if path == "/config.js":
            body = f"window.KEFU_TEST = {json.dumps(self.config)};\n".encode()
            return 200, "application/javascript; charset=utf-8", body
        if path in self.files:
            return 200, "application/javascript; charset=utf-8", self.files[path].read_bytes()
        target = (self.root / unquote(path).lstrip("/")).resolve()
        if not target.is_relative_to(self.root) or not target.is_file():
            return 404, "text/plain; charset=utf-8", b"not found\n"
        ctype = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
        if ctype.startswith("text/") or ctype.endswith("javascript"):
            ctype += "; charset=utf-8"
        return 200, ctype, target.read_bytes()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                method, target, _ = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ", 2)
                path = urlsplit(target).path
                self.requests.append(path)
                status, ctype, body = self._file(path) if method == "GET" else (405, "text/plain", b"")
                reason = {200: "OK", 404: "Not Found", 405: "Method Not Allowed"}[status]
                writer.write(
                    f"HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\n"
                    f"Content-Length: {len(body)}\r\nCache-Control: no-store\r\n\r\n".encode("latin-1")
                    + body
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ValueError, ssl.SSLError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()


async def wait_js(page: Page, expression: str, arg: Any = None, limit: float = LIMIT) -> Any:
    """Wait until ``expression`` (a JS function of ``arg``) returns a truthy value; return it."""
    handle = await page.wait_for_function(expression, arg=arg, timeout=limit * 1000)
    return await handle.json_value()


async def page_stats(page: Page, take: str, where: str, limit: float = LIMIT) -> dict[str, Any]:
    """The page's figures once ``where`` holds of them (as ``s``): ``take``, a JS async function
    returning the figures, runs every 100 ms in the page (started once per page)."""
    await page.evaluate(
        f"""() => {{
            if (window.__statsTimer) return;
            const take = {take};
            window.__statsTimer = setInterval(async () => {{ window.__stats = await take(); }}, 100);
        }}"""
    )
    handle = await page.wait_for_function(
        f"() => {{ const s = window.__stats; return s && ({where}) ? s : null; }}", timeout=limit * 1000
    )
    found: dict[str, Any] = await handle.json_value()
    return found


async def calls(
    page: Page, api: str, name: str | None = None, *, count: int = 1, limit: float = LIMIT
) -> list[dict[str, Any]]:
    """The recorded callbacks of ``api`` (named ``name``), once at least ``count`` came."""
    found: list[dict[str, Any]] = await wait_js(
        page,
        """([api, name, count]) => {
            const found = window.__calls.filter(c => c.api === api && (name === null || c.name === name));
            return found.length >= count ? found : null;
        }""",
        [api, name, count],
        limit,
    )
    return found


def states(records: list[dict[str, Any]]) -> list[str]:
    """The states of recorded v190307 callbacks."""
    return [r["args"][0] for r in records if r["name"] == "callback"]


async def screenshot(page: Page, name: str) -> Path:
    """Write ``test-artifacts/<name>.png`` (the whole page) and return its path."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    return path
