"""The SFU mode's signalling messages, decoded strictly (kefu.protocol.sfu)."""

from __future__ import annotations

from typing import Any

import pytest

from kefu.protocol import ApiError
from kefu.protocol.sfu import SfuAnswer, SfuCandidate, SfuOffer, decode_feed, decode_sfu_signal

SDP = "v=0\r\ns=-\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n"
FEED = {"kind": "visitor", "name": "v1"}


def test_the_three_messages_a_member_sends() -> None:
    assert decode_sfu_signal({"type": "offer", "sdp": SDP}) == SfuOffer(SDP)
    assert decode_sfu_signal({"type": "answer", "sdp": SDP, "feed": FEED}) == SfuAnswer(
        SDP, ("visitor", "v1")
    )
    got = decode_sfu_signal({"type": "candidate", "candidate": "candidate:1 1 udp 1 1.2.3.4 9 typ host"})
    assert got == SfuCandidate("candidate:1 1 udp 1 1.2.3.4 9 typ host", None, None, None)
    end = decode_sfu_signal({"type": "candidate", "candidate": "", "sdpMid": "0", "feed": FEED})
    assert end == SfuCandidate(None, "0", None, ("visitor", "v1"))


@pytest.mark.parametrize(
    "data",
    [
        None,
        [],
        "offer",
        {},
        {"type": "leave", "feed": FEED},  # the server's, not a member's
        {"type": "offer"},
        {"type": "offer", "sdp": 5},
        {"type": "offer", "sdp": "hello"},
        {"type": "offer", "sdp": "v=0\r\ns=-\r\n"},  # no media
        {"type": "offer", "sdp": "v=0\nm=" + "x" * 300_000},
        {"type": "offer", "sdp": SDP, "feed": FEED},  # a publisher offer has no feed
        {"type": "answer", "sdp": SDP},
        {"type": "answer", "sdp": SDP, "feed": {"kind": "sfu", "name": "sfu"}},
        {"type": "answer", "sdp": SDP, "feed": {"kind": "agent", "name": ""}},
        {"type": "answer", "sdp": SDP, "feed": {"kind": "agent", "name": "a", "x": 1}},
        {"type": "candidate", "candidate": 5},
        {"type": "candidate", "sdpMLineIndex": "0"},
        {"type": "candidate", "sdpMLineIndex": True},
        {"type": "candidate", "sdpMid": 0},
        {"type": "candidate", "feed": "v1"},
    ],
)
def test_anything_else_is_an_invalid_field(data: Any) -> None:
    with pytest.raises(ApiError) as err:
        decode_sfu_signal(data)
    assert err.value.code.value == "invalid_field" and err.value.msg.startswith("data")


def test_a_feed_is_a_member() -> None:
    assert decode_feed({"kind": "agent", "name": "a1"}) == ("agent", "a1")
    with pytest.raises(ApiError):
        decode_feed({"kind": "agent", "name": "x" * 65})
