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
``seq``, ``mark``, then the rest) through one function per kind
(``reply_json`` …), which :mod:`kefu.protocol.wire`'s builders
(``reply_message`` …) call directly on the hot path;
:func:`kefu.protocol.wire.encode` makes the text.
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
    "error_json",
    "event_json",
    "readdress",
    "reply_json",
    "request_json",
    "state_json",
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


# --- the encoder: one function per kind (the hot path calls these directly,
# through wire's names: a frozen model costs ~1.5 µs more per message, D37)


def request_json(mark: str, params: Any, rid: str) -> Json:
    msg = _base(mark, rid, None)
    if params is not None:
        msg["params"] = params
    return msg


def reply_json(
    mark: str, sub_mark: str, payload: Any, rid: str | None, state: str | None, seq: int | None, data: Any
) -> Json:
    msg = _base(mark, rid, seq)
    msg["subMark"] = sub_mark
    if state is not None:
        msg["state"] = state
    if payload is not None:
        msg["payload"] = payload
    if data is not None:
        msg["data"] = data
    return msg


def error_json(
    mark: str | None,
    code: ErrorCode,
    msg: str | None,
    rid: str | None,
    state: str | None,
    field_name: str | None,
    retry_after: float | None,
    seq: int | None,
) -> Json:
    out = _base(mark if mark is not None else "error", rid, seq)
    out["subMark"] = "error"
    if state is not None:
        out["state"] = state
    body = error_body(code, msg)
    if field_name is not None:
        body["field"] = field_name
    if retry_after is not None:
        body["retryAfter"] = retry_after
    out["error"] = body
    return out


def event_json(sub_mark: str, payload: Any, mark: str, seq: int | None) -> Json:
    msg = _base(mark, None, seq)
    msg["subMark"] = sub_mark
    if payload is not None:
        msg["payload"] = payload
    return msg


def state_json(state: str, payload: Any, seq: int | None) -> Json:
    msg = _base("state", None, seq)
    msg["state"] = state
    if payload is not None:
        msg["payload"] = payload
    return msg


_ENVELOPE_KEYS = ("v", "id", "seq", "mark")


def readdress(msg: Mapping[str, Any], rid: str, mark: str) -> Json:
    """``msg`` (an answer from upstream) as the answer to request ``rid`` of
    ``mark``: its own version, id, seq and mark replaced, the rest kept."""
    out = _base(mark, rid, None)
    out.update((k, v) for k, v in msg.items() if k not in _ENVELOPE_KEYS)
    return out


def to_json(message: Message) -> Json:
    """The envelope of ``message``."""
    if isinstance(message, Reply):
        m = message
        return reply_json(m.mark, m.sub_mark, m.payload, m.rid, m.state, m.seq, m.data)
    if isinstance(message, ErrorReply):
        e = message
        return error_json(e.mark, e.code, e.msg, e.rid, e.state, e.field, e.retry_after, e.seq)
    if isinstance(message, StatePush):
        return state_json(message.state, message.payload, message.seq)
    if isinstance(message, EventPush):
        return event_json(message.sub_mark, message.payload, message.mark, message.seq)
    if isinstance(message, CallPush):
        return event_json("call", message.payload(), "event", message.seq)
    return request_json(message.mark, message.params, message.rid)
