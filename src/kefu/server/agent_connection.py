"""``/ws/agent``: the plugin's link to the server (see :mod:`kefu.protocol.agent_api`).

What every socket does (limits, decoding, the first message, answering) is
:class:`~kefu.server.connection.Connection`'s; this is what the agent's asks.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import ClassVar

from starlette.websockets import WebSocket

from kefu.protocol import ApiError, ErrorCode
from kefu.protocol.agent_api import AGENT_API, AuthParams
from kefu.protocol.call import MemberKind
from kefu.protocol.machine import Event, Flow
from kefu.protocol.plugin_api import (
    CALL_MARKS,
    SUPERVISE_MARKS,
    ChatCloseParams,
    SendMessageParams,
    SessionParams,
    SetAgentStateParams,
    TransferSessionParams,
)
from kefu.protocol.wire import Request, error_message

from .accounts import Agent
from .agents import is_logged_in
from .connection import Connection, Handler
from .hub import agent_key
from .logins import CLOSE_LOGIN_ENDED
from .outbox import CLOSE_POLICY
from .services import Services

__all__ = ["AgentConnection"]

log = logging.getLogger("kefu.server.connection")


class AgentConnection(Connection):
    """``/ws/agent``: the plugin's link (see :mod:`kefu.protocol.agent_api`)."""

    __slots__ = ("agent_id", "agent_name", "token_hash")

    api = AGENT_API
    first_mark = "auth"

    def __init__(self, ws: WebSocket, services: Services) -> None:
        super().__init__(ws, services)
        self.agent_id: int | None = None
        self.agent_name: str | None = None
        self.token_hash: str | None = None  # of the token it logged in with (never the token)

    def login_ended(self, code: ErrorCode) -> None:
        """The token expired or was revoked, or the account was disabled (:mod:`.logins`)."""
        log.info(
            "agent %s: login ended (%s); closing with %d", self.agent_name, code.value, CLOSE_LOGIN_ENDED
        )
        self.outbox.reply(error_message(None, code))
        self.outbox.close(CLOSE_LOGIN_ENDED, code.value)

    async def closed(self) -> None:
        self.services.logins.forget(self)
        await super().closed()
        if self.agent_name is not None and self.authenticated:
            await self.services.calls.member_gone(MemberKind.agent, self.agent_name)
            if self.agent_id is not None:  # issue 20: no lost customer (presence asked at the end)
                self.services.transfers.agent_gone(self.agent_id)

    async def _me(self, *, logged_in: bool = True) -> Agent:
        assert self.agent_id is not None
        agent = await self.services.agents.get(self.agent_id)
        if agent.disabled:
            raise ApiError(code=ErrorCode.account_disabled)
        if logged_in and not is_logged_in(agent):
            raise ApiError(code=ErrorCode.not_logged_in)
        return agent

    async def on_auth(self, req: Request) -> None:
        p = req.params
        assert isinstance(p, AuthParams)
        sv = self.services
        try:
            grant = await sv.auth.grant(p.token)
            agent = grant.agent
            if self.agent_id is not None and agent.id != self.agent_id:
                raise ApiError("this connection belongs to another agent", code=ErrorCode.forbidden)
        except ApiError as exc:
            self.fail(req, exc)
            if not self.authenticated:
                self.outbox.close(CLOSE_POLICY, exc.code.value)
            return
        if not is_logged_in(agent):
            event = Event.loginReady if self.settings.ready_on_login else Event.login
            agent = (await sv.agents.apply(agent.id, Flow.agent, event, reason="login")).after
        key = agent_key(agent.id)
        if not self.authenticated:
            await sv.hub.bus.announce(key)  # present on every node before the reply
        latest = await sv.hub.latest_seq(key)
        payload = {
            "agent": agent.profile(),
            "lastSeq": latest,
            "sessions": await sv.sessions.open_of_agent(agent.id),
            "queue": await sv.router.queue_snapshot(),
            **sv.turn.payload(f"agent-{agent.id}", self.settings.now()),  # TURN for the hub's media
        }
        self.ok(req, payload, state=agent.state.code.value)
        self.token_hash = grant.token_hash
        sv.logins.watch(self, grant.token_hash, grant.expires_at)
        if self.authenticated:
            self.outbox.catch_up()
            return
        self.agent_id = agent.id
        self.agent_name = agent.name
        self.attach(key, min(p.lastSeq, latest))
        sv.calls.member_back(MemberKind.agent, agent.name)
        sv.transfers.agent_back(agent.id)
        log.info("agent %s connected (lastSeq %d, server %d)", agent.name, p.lastSeq, latest)
        if p.mediaCalls is not None:
            await sv.calls.media_back(agent.name, frozenset(p.mediaCalls))
        sv.router.kick()  # a ready agent can take waiting sessions now

    async def on_pick_up(self, req: Request) -> None:
        p = req.params
        assert isinstance(p, SessionParams)
        self.ok(req, await self.services.router.pick_up(await self._me(), p.session_id))

    async def on_chat_close(self, req: Request) -> None:
        p = req.params
        assert isinstance(p, ChatCloseParams)
        self.ok(req, await self.services.sessions.close_by_agent(await self._me(), p.session_id))

    async def on_send(self, req: Request) -> None:
        p = req.params
        assert isinstance(p, SendMessageParams)
        me = await self._me()
        self.ok(req, await self.services.sessions.agent_send(me, p.session_id, p.text, p.clientMsgId))

    async def on_transfer(self, req: Request) -> None:
        p = req.params
        assert isinstance(p, TransferSessionParams)
        me = await self._me()
        self.ok(req, await self.services.transfers.transfer(me, p.session_id, p.agentName, p.note))

    async def on_set_state(self, req: Request) -> None:
        p = req.params
        assert isinstance(p, SetAgentStateParams)
        me = await self._me()
        event = Event.setReady if p.state == "idle" else Event.setNotReady
        change = await self.services.agents.apply(me.id, Flow.agent, event, reason=p.reason)
        code = change.after.state.code.value
        self.ok(req, {"old": change.before.state.code.value, "reason": p.reason}, state=code)

    async def on_logout(self, req: Request) -> None:
        """Log out, revoke the token, then close with 4003 ``token_revoked`` (after the reply)."""
        me = await self._me()
        sv = self.services
        change = await sv.agents.apply(me.id, Flow.agent, Event.logout, reason="logout")
        assert self.token_hash is not None
        await sv.auth.revoke(self.token_hash)
        self.ok(req, {"old": change.before.state.code.value}, state=change.after.state.code.value)
        # this socket asked: its reply says so, and it closes with no error after it;
        # the token's other sockets (another tab, another node) are told token_revoked
        sv.logins.forget(self)
        sv.logins.end_token(self.token_hash, ErrorCode.token_revoked)
        self.outbox.close(CLOSE_LOGIN_ENDED, ErrorCode.token_revoked.value)

    async def on_session_count(self, req: Request) -> None:
        me = await self._me(logged_in=False)
        sessions = await self.services.sessions.open_of_agent(me.id)
        self.ok(req, {"sessionCount": len(sessions)})

    async def on_session_state(self, req: Request) -> None:
        me = await self._me(logged_in=False)
        self.ok(req, {"sessions": await self.services.sessions.open_of_agent(me.id)})

    async def on_get_state(self, req: Request) -> None:
        me = await self._me(logged_in=False)
        self.ok(req, {"since": me.state_since.isoformat()}, state=me.state.code.value)

    async def on_ping(self, req: Request) -> None:
        self.ok(req, sub_mark="pong")

    async def on_call(self, req: Request) -> None:
        await self.services.calls.handle(await self._me(), req, self)

    async def on_ice(self, req: Request) -> None:
        """``iceServers``: a fresh TURN credential (the plugin asks at ``iceRenewIn``)."""
        me = await self._me(logged_in=False)
        self.ok(req, self.services.turn.payload(f"agent-{me.id}", self.settings.now()))

    handlers: ClassVar[Mapping[str, Handler]] = {
        "auth": on_auth,
        "pickUpSession": on_pick_up,
        "chatClose": on_chat_close,
        "sendMessage": on_send,
        "transferSession": on_transfer,
        "setAgentState": on_set_state,
        "logout": on_logout,
        "sessionCount": on_session_count,
        "sessionState": on_session_state,
        "getState": on_get_state,
        "ping": on_ping,
        "iceServers": on_ice,
        **dict.fromkeys((*CALL_MARKS, "signal", "inviteShare", "takePhoto", "mediaFailed"), on_call),
        **dict.fromkeys(SUPERVISE_MARKS, on_call),  # issue 20: kefu.server.supervise
    }
