"""The messages kefu sends, typed: one frozen model per kind, one encoder.

Requests are decoded into typed models at one edge (:func:`kefu.protocol.wire.decode_request`);
this module is the other edge. Every message a kefu process builds is one of:

================  ===============================================================
:class:`OutRequest`  ``{"v":1,"id":"r17","mark":"…","params":{…}}``
:class:`Reply`       ``{"v":1,"id":"r17","mark":"…","subMark":"inviteSuccess","state":"003001","payload":{…}}``
:class:`ErrorReply`  ``{"v":1,"id":"r17","mark":"…","subMark":"error","state":"002004","error":{"code":…,"msg":…}}``
:class:`EventPush`   ``{"v":1,"mark":"initInnerCallBack","subMark":"chatCloseCB","payload":{…}}``
:class:`StatePush`   ``{"v":1,"mark":"state","state":"006011","payload":{…}}``
:class:`CallPush`    ``{"v":1,"mark":"event","subMark":"call","payload":{"callId":…,"what":…}}``
================  ===============================================================

:func:`to_json` turns any of them into the envelope (key order: ``v``, ``id``,
``seq``, ``mark``, then the rest); :func:`kefu.protocol.wire.encode` makes
the text. The builders of :mod:`kefu.protocol.wire` (``reply_message`` …)
are these models' shorthands.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .call import CallNotice, CallPhase, MemberStatus
from .errors import ErrorCode, error_body

__all__ = [
    "PROTOCOL_VERSION",
    "CallNotice",
    "CallPush",
    "ErrorReply",
    "EventPush",
    "Message",
    "OutRequest",
    "Reply",
    "StatePush",
    "to_json",
]

PROTOCOL_VERSION = 1

Json = dict[str, Any]


def _base(mark: str, rid: str | None, seq: int | None) -> Json:
    msg: Json = {"v": PROTOCOL_VERSION}
    if rid is not None:
        msg["id"] = rid
    if seq is not None:
        msg["seq"] = seq
    msg["mark"] = mark
    return msg


@dataclass(frozen=True, slots=True)
class OutRequest:
    mark: str
    rid: str
    params: Any = None  # absent when None


@dataclass(frozen=True, slots=True)
class Reply:
    """A reply or progress message for request ``rid`` (``sub_mark`` = the v1204 callback)."""

    mark: str
    sub_mark: str
    payload: Any = None
    rid: str | None = None
    state: str | None = None
    seq: int | None = None
    data: Any = None  # SPEC §4.6: isMultipleVideo / isShareState answer in ``data.data``


@dataclass(frozen=True, slots=True)
class ErrorReply:
    """An error in the spec's form (SPEC §2 v1204: the message is at ``error.msg``)."""

    mark: str | None
    code: ErrorCode
    msg: str | None = None
    rid: str | None = None
    state: str | None = None
    field: str | None = None
    retry_after: float | None = None
    seq: int | None = None


@dataclass(frozen=True, slots=True)
class EventPush:
    """A pushed event (SPEC §3.2 callbacks are ``mark: initInnerCallBack``)."""

    sub_mark: str
    payload: Any = None
    mark: str = "initInnerCallBack"
    seq: int | None = None


@dataclass(frozen=True, slots=True)
class StatePush:
    state: str
    payload: Any = None
    seq: int | None = None


@dataclass(frozen=True, slots=True)
class CallPush:
    """A call's news for one member: ``what`` happened; ``detail`` adds to it.
    ``phase`` and the members' ``status`` are the call model's enums."""

    call_id: str
    what: CallNotice
    media: str | None = None  # "hub" or "sfu"
    phase: CallPhase | None = None
    members: tuple[Mapping[str, Any], ...] | None = None
    detail: Mapping[str, Any] = field(default_factory=dict)
    seq: int | None = None

    def payload(self) -> Json:
        out: Json = {"callId": self.call_id, "what": self.what.value}
        if self.media is not None:
            out["media"] = self.media
        if self.phase is not None:
            out["phase"] = self.phase.value
        if self.members is not None:
            out["members"] = [
                {**m, "status": MemberStatus(m["status"]).value} if "status" in m else dict(m)
                for m in self.members
            ]
        out.update(self.detail)
        return out


Message = OutRequest | Reply | ErrorReply | EventPush | StatePush | CallPush


def to_json(message: Message) -> Json:
    """The envelope of ``message`` (the one place messages are built)."""
    if isinstance(message, Reply):
        msg = _base(message.mark, message.rid, message.seq)
        msg["subMark"] = message.sub_mark
        if message.state is not None:
            msg["state"] = message.state
        if message.payload is not None:
            msg["payload"] = message.payload
        if message.data is not None:
            msg["data"] = message.data
        return msg
    if isinstance(message, ErrorReply):
        msg = _base(message.mark if message.mark is not None else "error", message.rid, message.seq)
        msg["subMark"] = "error"
        if message.state is not None:
            msg["state"] = message.state
        body = error_body(message.code, message.msg)
        if message.field is not None:
            body["field"] = message.field
        if message.retry_after is not None:
            body["retryAfter"] = message.retry_after
        msg["error"] = body
        return msg
    if isinstance(message, StatePush):
        msg = _base("state", None, message.seq)
        msg["state"] = message.state
        if message.payload is not None:
            msg["payload"] = message.payload
        return msg
    if isinstance(message, EventPush):
        msg = _base(message.mark, None, message.seq)
        msg["subMark"] = message.sub_mark
        if message.payload is not None:
            msg["payload"] = message.payload
        return msg
    if isinstance(message, CallPush):
        return to_json(EventPush("call", message.payload(), mark="event", seq=message.seq))
    msg = _base(message.mark, message.rid, None)
    if message.params is not None:
        msg["params"] = message.params
    return msg
