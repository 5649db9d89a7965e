"""The agent's login (SPEC §4.1 ``startLogin``) and logout, which belong to the plugin.

``startLogin`` fetches the login URL (:mod:`kefu.plugin.login`), opens the
agent's link with the token it got, and tells every SDK ``kefuReady``; a
login of another agent logs the first one out. A page reload closes one
controller and opens the next, which is greeted with ``kefuReady`` and the
current state: the login is the plugin's, not a connection's. The token
lives in memory only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from kefu.protocol import ApiError, ErrorCode, ProtocolError, Request, TopState, error_message, reply_message
from kefu.protocol.plugin_api import StartLoginParams
from kefu.protocol.wire import Json, event_message

from .host import PluginCore, Replier
from .link import AgentLink
from .link_events import LinkEvents, LinkListener, client_event
from .login import check_login_url, fetch_login
from .upstream import Upstream

__all__ = ["AgentLogin"]

log = logging.getLogger("kefu.plugin")


class AgentLogin:
    def __init__(
        self, core: PluginCore, upstream: Upstream, events: LinkEvents, rng: Callable[[], float]
    ) -> None:
        self.core = core
        self.upstream = upstream
        self.events = events
        self.rng = rng
        #: a ``startLogin`` is going on (a new controller is not told ``ssoReady`` meanwhile)
        self.in_progress = False

    async def start(self, conn: Replier, req: Request) -> None:
        """``startLogin`` (SPEC §4.1): log the agent in with the login URL the page gives."""
        params = req.params

        def fail(code: ErrorCode, msg: str | None = None, field: str | None = None) -> None:
            out = error_message(req.mark, code, msg, rid=req.id, field_name=field)
            # SPEC §4.1's sample reads ``err.code == -1``: the code is at the top as well
            out["code"] = out["error"]["code"]
            conn.reply(out)

        if not isinstance(params, StartLoginParams):  # the decoder chose another model: a bug
            fail(ErrorCode.internal, f"{req.mark} takes StartLoginParams")
            return
        try:
            form = check_login_url(params.data.url, self.core.settings.server_origin)
        except ProtocolError as exc:
            fail(exc.code, exc.msg, exc.field)
            return
        if self.in_progress:
            fail(ErrorCode.invalid_state, "a login is in progress")
            return
        self.in_progress = True
        if params.minimize:
            self.core.window.minimize()  # SPEC §4.1: minimised while logging in
        link: AgentLink | None = None
        try:
            async with asyncio.timeout(self.core.settings.login_timeout):
                result = await fetch_login(
                    form,
                    self.core.settings.http_base,
                    http_timeout=self.core.settings.login_timeout,
                    ssl=self.core.server_ssl,
                )
                old, old_agent = self.core.link, self.core.agent
                self.core.link, self.core.agent = None, None
                if old is not None:
                    if old.up and (old_agent or {}).get("name") != result.agent.get("name"):
                        # another agent logs in on this plugin: the first one leaves properly
                        with contextlib.suppress(ApiError, TimeoutError):
                            async with asyncio.timeout(self.core.settings.quit_logout_timeout):
                                await self.upstream.upstream(old, "logout", {})
                    await old.close()
                self.core.state = TopState.notLogin.value
                listener = LinkListener(self.events)
                link = self._new_link(result.token, listener)
                listener.link = link
                auth = await link.start(self._login_params())
        except TimeoutError:
            if link is not None:
                await link.close()
            log.warning("login timed out after %.1f s", self.core.settings.login_timeout)
            fail(ErrorCode.login_timeout, "login timed out")
            self.in_progress = False
            self._after_failed_login()
            return
        except ApiError as exc:
            log.warning("login failed: %s", exc.code.value)
            fail(exc.code, exc.msg)
            self.in_progress = False
            self._after_failed_login()
            return
        self.in_progress = False
        payload = auth.get("payload")
        self.upstream.use_ice(payload)
        agent = payload.get("agent") if isinstance(payload, dict) else None
        if not isinstance(agent, dict):
            agent = result.agent
        if self.core.mirror.me is not None and self.core.mirror.me != agent.get("name"):
            await self.core.end_calls()  # another agent: the first one's calls are not ours
        self.core.link = link
        self.core.agent = agent
        self.core.api_token = link.token
        self.core.mirror.me = agent.get("name") if isinstance(agent.get("name"), str) else None
        self.core.set_state(auth.get("state"))
        log.info("agent logged in")
        ready = self.core.ready_payload()
        conn.reply(reply_message(req.mark, "success", ready, rid=req.id))
        self.core.broadcast(client_event("kefuReady", ready))
        queue = payload.get("queue") if isinstance(payload, dict) else None
        self.core.queue = queue if isinstance(queue, dict) else None
        if self.core.someone_waits():
            self.core.broadcast(event_message("queue", self.core.queue, mark="event"))

    def _login_params(self) -> Json:
        """What the plugin holds as it logs in: the calls whose media it has.
        A connected call of the agent not among them lost its media with a
        previous plugin process: the server ends it (``agent_media_lost``,
        docs/calls.md). Without media (``--no-media``) there is none to lose."""
        if self.core.media is None:
            return {}
        return {"mediaCalls": sorted(self.core.media.calls)}

    def _after_failed_login(self) -> None:
        if self.core.agent is None:
            self.core.broadcast(self.core.sso_ready())

    def _new_link(self, token: str, listener: LinkListener) -> AgentLink:
        settings = self.core.settings
        return AgentLink(
            settings.agent_ws_url,
            token,
            listener,
            request_timeout=settings.request_timeout,
            open_timeout=settings.open_timeout,
            backoff_min=settings.backoff_min,
            backoff_max=settings.backoff_max,
            ping_interval=settings.ping_interval,
            ping_timeout=settings.ping_timeout,
            ssl=self.core.server_ssl,
            rng=self.rng,
        )

    async def logged_out(self, link: AgentLink) -> None:
        if self.core.link is not link:
            return
        self.core.link = None
        self.core.agent = None
        self.core.state = TopState.notLogin.value
        await link.close()
        await self.core.end_calls()
        self.core.api_token = None
        self.core.broadcast(self.core.sso_ready())
