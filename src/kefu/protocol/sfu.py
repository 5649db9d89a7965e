"""Signalling with the media server (SFU mode, docs/calls.md "Media through Janus").

In the SFU mode a member's ``signal`` goes ``to: {"kind": "sfu", "name": "sfu"}``
and the server turns it into Janus requests (docs/decisions.md D14); the
server's ``signal`` pushes come ``from`` the same reference. The messages::

    member → sfu  {"type": "offer", "sdp"}            publish (again: renegotiate)
    sfu → member  {"type": "answer", "sdp"}           the publisher's answer
    sfu → member  {"type": "offer", "sdp", "feed"}    a subscription to feed's media
    member → sfu  {"type": "answer", "sdp", "feed"}   its answer (the server starts it)
    member → sfu  {"type": "candidate", "candidate", "sdpMid"?, "sdpMLineIndex"?,
                   "feed"?}                           a trickled candidate (browsers)
    sfu → member  {"type": "leave", "feed"}           the feed's member left

``feed`` is the publishing member ``{"kind": "agent"|"visitor", "name"}``. This
module decodes what members send (it comes from the network): strict shapes,
every failure an ``invalid_field`` with the field's name; no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from .errors import ApiError, ErrorCode

__all__ = [
    "SDP_LIMIT",
    "SFU",
    "SfuAnswer",
    "SfuCandidate",
    "SfuOffer",
    "decode_feed",
    "decode_sfu_signal",
    "feed_ref",
]

SFU = {"kind": "sfu", "name": "sfu"}  # the media server, as members address it
SDP_LIMIT = 256 * 1024
_NAME_LIMIT = 64

Feed = tuple[str, str]  # (kind, name) of a publishing member


@dataclass(frozen=True, slots=True)
class SfuOffer:
    """A member publishes its tracks (or changes them)."""

    sdp: str


@dataclass(frozen=True, slots=True)
class SfuAnswer:
    """A member's answer to the server's offer of ``feed``'s media."""

    sdp: str
    feed: Feed


@dataclass(frozen=True, slots=True)
class SfuCandidate:
    """A trickled ICE candidate: of the member's publisher, or of its subscription to ``feed``."""

    candidate: str | None
    sdp_mid: str | None
    sdp_mline_index: int | None
    feed: Feed | None


SfuSignal = SfuOffer | SfuAnswer | SfuCandidate

_FIELDS: dict[str, set[str]] = {
    "offer": {"type", "sdp"},
    "answer": {"type", "sdp", "feed"},
    "candidate": {"type", "candidate", "sdpMid", "sdpMLineIndex", "usernameFragment", "feed"},
}


def _bad(msg: str) -> ApiError:
    return ApiError(msg, code=ErrorCode.invalid_field)


def feed_ref(kind: str, name: str) -> dict[str, str]:
    return {"kind": kind, "name": name}


def decode_feed(value: object, where: str = "data.feed") -> Feed:
    if not isinstance(value, dict) or set(value) != {"kind", "name"}:
        raise _bad(f'{where}: {{"kind": "agent"|"visitor", "name": …}}')
    kind, name = value["kind"], value["name"]
    if kind not in ("agent", "visitor"):
        raise _bad(f"{where}.kind: agent or visitor")
    if not isinstance(name, str) or not 1 <= len(name) <= _NAME_LIMIT:
        raise _bad(f"{where}.name: a string of 1 to {_NAME_LIMIT} characters")
    return kind, name


def _sdp(message: dict[str, Any], kind: Literal["offer", "answer"]) -> str:
    sdp = message.get("sdp")
    if not isinstance(sdp, str) or not sdp.startswith("v=0") or len(sdp) > SDP_LIMIT:
        raise _bad(f"data.sdp: the {kind}'s SDP (starting v=0, under 256 KiB)")
    if "\nm=" not in sdp:
        raise _bad("data.sdp: an SDP with m= lines")
    return sdp


def decode_sfu_signal(message: object) -> SfuSignal:
    """A member's ``signal`` data to the media server, checked (``invalid_field`` otherwise)."""
    if not isinstance(message, dict):
        raise _bad("data: a JSON object")
    kind = message.get("type")
    if kind not in _FIELDS:
        raise _bad("data.type: offer, answer or candidate (to the media server)")
    extra = set(message) - _FIELDS[kind]
    if extra:
        raise _bad(f"data: unknown field(s) {sorted(extra)} in {kind}")
    if kind == "offer":
        return SfuOffer(_sdp(message, "offer"))
    if kind == "answer":
        return SfuAnswer(_sdp(message, "answer"), decode_feed(message.get("feed")))
    text, mid, index = message.get("candidate"), message.get("sdpMid"), message.get("sdpMLineIndex")
    if text is not None and (not isinstance(text, str) or len(text) > 1024):
        raise _bad("data.candidate: a string under 1 KiB")
    if mid is not None and (not isinstance(mid, str) or len(mid) > 64):
        raise _bad("data.sdpMid: a string")
    if index is not None and (type(index) is not int or not 0 <= index < 64):
        raise _bad("data.sdpMLineIndex: an integer")
    feed = decode_feed(message["feed"]) if message.get("feed") is not None else None
    return SfuCandidate(text or None, mid, index, feed)
