"""``/ws/visitor``: a visitor's page or :class:`kefu.visitor.Visitor`
(see :mod:`kefu.protocol.visitor_api`).

What every socket does (limits, decoding, the first message, answering) is
:class:`~kefu.server.connection.Connection`'s; this is what the visitor's asks.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import ClassVar

from starlette.websockets import WebSocket

from kefu.protocol import ApiError, ErrorCode
from kefu.protocol.call import MemberKind
from kefu.protocol.visitor_api import (
    VISITOR_API,
    AnswerCallParams,
    CallIdParams,
    MediaFailedParams,
    PhotoAnswerParams,
    ShareAnswerParams,
    SignalParams,
    VisitorHelloParams,
    VisitorMessageParams,
)
from kefu.protocol.wire import Request

from .connection import Connection, Handler
from .services import Services
from .visitors import Visitor, identify

__all__ = ["VisitorConnection"]

log = logging.getLogger("kefu.server.connection")


class VisitorConnection(Connection):
    """``/ws/visitor``: a visitor's page or :class:`kefu.visitor.Visitor`."""

    __slots__ = ("visitor",)

    api = VISITOR_API
    first_mark = "hello"

    def __init__(self, ws: WebSocket, services: Services) -> None:
        super().__init__(ws, services)
        self.visitor: Visitor | None = None

    async def closed(self) -> None:
        await super().closed()
        if self.visitor is not None and self.authenticated:
            await self.services.calls.member_gone(MemberKind.visitor, self.visitor.name)

    async def on_request_video(self, req: Request) -> None:
        self.ok(req, await self.services.calls.request_video(self._me()))

    async def on_answer_call(self, req: Request) -> None:
        p = req.params
        assert isinstance(p, AnswerCallParams)
        self.ok(req, await self.services.calls.answer(self._me(), p))

    async def on_join_call(self, req: Request) -> None:
        p = req.params
        assert isinstance(p, CallIdParams)
        self.ok(req, await self.services.calls.join(self._me(), p))

    async def on_hangup(self, req: Request) -> None:
        p = req.params
        assert isinstance(p, CallIdParams)
        self.ok(req, await self.services.calls.hangup_visitor(self._me(), p))

    async def on_signal(self, req: Request) -> None:
        p = req.params
        assert isinstance(p, SignalParams)
        await self.services.calls.visitor_signal(self._me(), p)
        self.ok(req)

    async def on_share_answer(self, req: Request) -> None:
        p = req.params
        assert isinstance(p, ShareAnswerParams)
        await self.services.calls.share_answer(self._me(), p)
        self.ok(req)

    async def on_photo_answer(self, req: Request) -> None:
        p = req.params
        assert isinstance(p, PhotoAnswerParams)
        await self.services.calls.photo_answer(self._me(), p)
        self.ok(req)

    async def on_ice(self, req: Request) -> None:
        """``iceServers``: a fresh TURN credential (the visitor asks at ``iceRenewIn``)."""
        self.ok(req, self.services.turn.payload(f"visitor-{self._me().id}", self.settings.now()))

    async def on_media_failed(self, req: Request) -> None:
        p = req.params
        assert isinstance(p, MediaFailedParams)
        self.ok(req, await self.services.calls.visitor_media_failed(self._me(), p))

    def _me(self) -> Visitor:
        assert self.visitor is not None
        return self.visitor

    async def on_hello(self, req: Request) -> None:
        p = req.params
        assert isinstance(p, VisitorHelloParams)
        if self.visitor is not None:
            raise ApiError(f"already identified as {self.visitor.name!r}", code=ErrorCode.invalid_state)
        sv = self.services
        visitor, key, (latest, session) = await identify(
            sv.hub, p.name, p.visitorKey, read_also=sv.sessions.resume
        )
        await sv.hub.bus.announce(visitor.recipient)  # present on every node before the reply
        payload = {
            "visitorId": visitor.id,
            "visitorName": visitor.name,
            "visitorKey": key,
            "session": session,
            "lastSeq": latest,
            **sv.turn.payload(f"visitor-{visitor.id}", self.settings.now()),  # TURN for the call's media
        }
        self.ok(req, payload)
        self.visitor = visitor
        self.attach(visitor.recipient, min(p.lastSeq, latest))
        sv.calls.member_back(MemberKind.visitor, visitor.name)
        log.info("visitor %s connected", visitor.id)

    async def on_send(self, req: Request) -> None:
        p = req.params
        assert isinstance(p, VisitorMessageParams)
        self.ok(req, await self.services.sessions.visitor_send(self._me(), p.text, p.clientMsgId))

    async def on_close(self, req: Request) -> None:
        self.ok(req, await self.services.sessions.close_by_visitor(self._me()))

    async def on_ping(self, req: Request) -> None:
        self.ok(req, sub_mark="pong")

    handlers: ClassVar[Mapping[str, Handler]] = {
        "hello": on_hello,
        "sendMessage": on_send,
        "closeSession": on_close,
        "ping": on_ping,
        "requestVideo": on_request_video,
        "answerCall": on_answer_call,
        "joinCall": on_join_call,
        "hangup": on_hangup,
        "signal": on_signal,
        "shareAnswer": on_share_answer,
        "photoAnswer": on_photo_answer,
        "iceServers": on_ice,
        "mediaFailed": on_media_failed,
    }
