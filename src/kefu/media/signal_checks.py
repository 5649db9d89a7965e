"""The checks of a signalling message from the network (see :mod:`kefu.media.peer` for the messages)."""

from __future__ import annotations

from typing import Any

from aiortc import RTCIceCandidate
from aiortc.sdp import SessionDescription, candidate_from_sdp

from kefu.protocol.errors import ErrorCode

from .errors import NegotiationError

__all__ = ["ABS_SEND_TIME", "SDP_LIMIT", "decode_signal", "parse_candidate", "parse_sdp", "without_extension"]

#: the longest SDP accepted
SDP_LIMIT = 256 * 1024
#: the RTP header extension that feeds aiortc's receive-side bandwidth estimate (REMB)
ABS_SEND_TIME = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"


def without_extension(sdp: str, uri: str) -> str:
    """``sdp`` without its ``a=extmap`` lines of the header extension ``uri`` (RFC 8285):
    an answer to it does not take that extension, so the offerer does not send it."""
    return "".join(
        line
        for line in sdp.splitlines(keepends=True)
        if not (line.startswith("a=extmap:") and line.split()[1:2] == [uri])
    )


def parse_sdp(sdp: str) -> SessionDescription:
    # aiortc's parser takes almost anything; check the shape first (RFC 8866 §5)
    if not sdp.startswith("v=0") or "\nm=" not in sdp:
        raise NegotiationError(
            "unreadable SDP: it must start with v=0 and have m= lines", code=ErrorCode.bad_request
        )
    try:
        return SessionDescription.parse(sdp)
    except Exception as exc:
        raise NegotiationError(f"unreadable SDP: {exc}", code=ErrorCode.bad_request) from exc


def decode_signal(message: object) -> tuple[str, dict[str, Any]]:
    """Strict checks of a signalling message (it comes from the network)."""
    if not isinstance(message, dict):
        raise NegotiationError("a signalling message is a JSON object", code=ErrorCode.bad_request)
    kind = message.get("type")
    allowed = {
        "offer": {"type", "sdp"},
        "answer": {"type", "sdp"},
        "renegotiate": {"type", "send"},
        "candidate": {"type", "candidate", "sdpMid", "sdpMLineIndex", "usernameFragment"},
    }
    if kind not in allowed:
        raise NegotiationError(
            "signalling type: offer, answer, renegotiate or candidate", code=ErrorCode.bad_request
        )
    extra = set(message) - allowed[kind]
    if extra:
        raise NegotiationError(f"unknown field(s) {sorted(extra)} in {kind}", code=ErrorCode.bad_request)
    if kind in ("offer", "answer"):
        sdp = message.get("sdp")
        if not isinstance(sdp, str) or not sdp or len(sdp) > SDP_LIMIT:
            raise NegotiationError(
                f"{kind}.sdp: a non-empty string under 256 KiB", code=ErrorCode.bad_request
            )
    elif kind == "renegotiate":
        send = message.get("send")
        if (
            not isinstance(send, dict)
            or set(send) - {"audio", "video"}
            or not all(type(v) is int and 0 <= v <= 4 for v in send.values())
        ):
            raise NegotiationError(
                'renegotiate.send: {"video": n, "audio": n} with 0 <= n <= 4', code=ErrorCode.bad_request
            )
    else:
        text = message.get("candidate")
        mid = message.get("sdpMid")
        index = message.get("sdpMLineIndex")
        if text is not None and (not isinstance(text, str) or len(text) > 1024):
            raise NegotiationError("candidate.candidate: a string", code=ErrorCode.bad_request)
        if mid is not None and not isinstance(mid, str):
            raise NegotiationError("candidate.sdpMid: a string", code=ErrorCode.bad_request)
        if index is not None and type(index) is not int:
            raise NegotiationError("candidate.sdpMLineIndex: an integer", code=ErrorCode.bad_request)
    return kind, message


def parse_candidate(body: dict[str, Any]) -> RTCIceCandidate | None:
    """The ICE candidate of a checked ``candidate`` message; ``None``: the end of candidates."""
    text = body.get("candidate")
    if not text:
        return None
    try:
        candidate = candidate_from_sdp(text.removeprefix("candidate:"))
    except (ValueError, IndexError, AssertionError) as exc:  # aiortc asserts the field count
        raise NegotiationError(f"bad ICE candidate: {text[:100]!r}", code=ErrorCode.bad_request) from exc
    candidate.sdpMid = body.get("sdpMid")
    candidate.sdpMLineIndex = body.get("sdpMLineIndex")
    return candidate
