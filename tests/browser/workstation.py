"""A bank's workstation page in Chromium running the spec's samples against
the real server and plugin (``tests/browser/pages/workstation.html``).

The page loads ``imclient.js`` from the plugin and the spec's init sample
(SPEC §3) byte for byte; ``pages/harness.js`` maps the sample's
``ws://127.0.0.1:1040`` to the test plugin's port and records every callback
in ``window.__calls``. :meth:`Workstation.run` loads one more sample
(``pages/samples/<name>.js``, copied verbatim from the spec) into the page.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from playwright.async_api import BrowserContext, Page

from kefu.visitor import Visitor
from tests.plugin.harness import PASSWORD, Stack
from tests.server.clients import AgentClient

from .harness import LIMIT, MEDIA, PageServer, calls, wait_js

__all__ = ["SPEC_AGENT", "SPEC_PASSWORD", "Workstation"]

#: The agent of the spec's startLogin sample (SPEC §4.1): name 23160006, password 76160006.
SPEC_AGENT = "23160006"
SPEC_PASSWORD = "76160006"


class Workstation:
    """The page, its plugin and server (a :class:`Stack`), and the people around them."""

    def __init__(self, page: Page, stack: Stack, pages: PageServer) -> None:
        self.page = page
        self.stack = stack
        self.pages = pages
        self.visitors: list[Visitor] = []
        self._exit = contextlib.AsyncExitStack()

    @classmethod
    @contextlib.asynccontextmanager
    async def open(
        cls,
        context: BrowserContext,
        tmp_path: Path,
        *,
        server: dict[str, Any] | None = None,
        pages: PageServer | None = None,
        imclient_url: str | None = None,
        **plugin: Any,
    ) -> AsyncIterator[Workstation]:
        """The page on an allowed origin. ``plugin`` overrides the plugin's settings
        (``media=None``: calls are signalling only, as ``kefu plugin --no-media``; by
        default :data:`~tests.browser.harness.MEDIA`, no recording).

        ``pages``: the page's server (started by the caller; by default one on
        ``http://127.0.0.1``); ``imclient_url``: where the page loads imclient.js
        (by default from the plugin, ``<its URL>/imclient.js`` over http or https)."""
        plugin.setdefault("media", MEDIA)
        async with contextlib.AsyncExitStack() as started:
            if pages is None:
                pages = await started.enter_async_context(PageServer())
            stack = await started.enter_async_context(
                Stack(tmp_path, allow_origins=(pages.origin,), server=server, **plugin)
            )
            await stack.server.add_agent(SPEC_AGENT, SPEC_PASSWORD)
            http_url = stack.p.url.replace("wss://", "https://").replace("ws://", "http://")
            pages.config.update(
                pluginPort=stack.p.port, imclientUrl=imclient_url or f"{http_url}/imclient.js"
            )
            page = await context.new_page()
            ws = cls(page, stack, pages)
            try:
                await page.goto(pages.url("/workstation.html"))
                await wait_js(page, "() => typeof window.initIMClient === 'function'")
                yield ws
            finally:
                await ws._exit.aclose()
                await page.close()

    # --- the page

    async def init(self) -> None:
        """Run the init sample's ``initIMClient()`` as a page would, keeping the client as ``client``."""
        await self.page.evaluate("() => { window.client = window.initIMClient(); }")
        await calls(self.page, "IMClient", "success")

    async def run(self, sample: str) -> list[dict[str, Any]]:
        """Load ``samples/<sample>.js``; the page errors it raised."""
        errors: list[dict[str, Any]] = await self.page.evaluate("name => window.runSample(name)", sample)
        return errors

    async def run_ok(self, sample: str) -> None:
        errors = await self.run(sample)
        assert errors == [], f"{sample}: {errors}"

    async def calls(self, api: str, name: str | None = None, count: int = 1) -> list[dict[str, Any]]:
        return await calls(self.page, api, name, count=count)

    async def states(self, api: str, count: int) -> list[str]:
        """The states the v190307 callback of ``api`` got, once it got ``count``."""
        return [c["args"][0] for c in await calls(self.page, api, "callback", count=count)]

    async def recorded(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = await self.page.evaluate("() => window.__calls")
        return found

    async def logs(self) -> list[list[Any]]:
        """Every console.log of the page, its arguments as JSON."""
        found: list[list[Any]] = await self.page.evaluate("() => window.__logs")
        return found

    async def js(self, expression: str, arg: Any = None) -> Any:
        return await self.page.evaluate(expression, arg)

    async def login(self) -> None:
        """Log the spec's agent in through ``client.startLogin`` on the test's server."""
        url = f"{self.stack.server.url}/doLogin?name={SPEC_AGENT}&pwd={SPEC_PASSWORD}&returnTo="
        await self.js(
            """url => client.startLogin({minimize: false, data: {url: url},
                                          success: function (d) {}, error: function (e) {}})""",
            url,
        )
        await wait_js(
            self.page, "() => window.__calls.some(c => c.api === 'IMClient' && c.name === 'kefuReady')"
        )

    async def set_state(self, state: str) -> str:
        """``client.setAgentState`` (an addition): "idle" or "busy"; the new code."""
        code: str = await self.page.evaluate(
            """state => new Promise(resolve => client.setAgentState({state: state}, s => resolve(s)))""",
            state,
        )
        return code

    async def wait_state(self, code: str) -> None:
        """Until the client's state (``client.state``, an addition of imclient.js) is ``code``."""
        await wait_js(self.page, "code => client.state === code", code)

    async def set_global(self, name: str, value: Any) -> None:
        await self.page.evaluate("([k, v]) => { window[k] = v; }", [name, value])

    # --- visitors and other agents

    async def visitor(self, name: str, **kw: Any) -> Visitor:
        kw.setdefault("on_invite", "accept")
        kw.setdefault("media", MEDIA)
        v = Visitor(self.stack.server.url, name, timeout=LIMIT, **kw)
        await self._exit.enter_async_context(v)
        self.visitors.append(v)
        return v

    async def agent(self, name: str, *, ready: bool = True) -> AgentClient:
        """Another agent, on the server's agent socket (as its plugin would be)."""
        server = self.stack.server
        await server.add_agent(name)
        token = (await server.services.auth.login(name, PASSWORD, "127.0.0.1")).token
        client = AgentClient(server.url.replace("http://", "ws://") + "/ws/agent", token, timeout=LIMIT)
        await client.connect()
        self._exit.push_async_callback(client.aclose)
        await client.skip_history()
        if ready:
            await client.call("setAgentState", {"state": "idle"})
        return client
