"""The signalling messages come from the network: bad ones are refused with a
catalogue code and change nothing; ICE stays on 127.0.0.1; trickled
candidates (as a browser sends them) work."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

import pytest

from kefu.media import (
    IceServer,
    MediaError,
    MediaMember,
    MediaPeer,
    MediaSettings,
    NegotiationError,
    gathered_addresses,
    host_addresses,
    open_source,
    rtc_configuration,
    sample_rgb,
)
from kefu.protocol.errors import ErrorCode

from .conftest import BLUE, GREEN, near

BAD: list[tuple[Any, str]] = [
    ("offer", "a JSON object"),
    ({"sdp": "x"}, "signalling type"),
    ({"type": "pranswer", "sdp": "x"}, "signalling type"),
    ({"type": "offer"}, "offer.sdp"),
    ({"type": "offer", "sdp": 12}, "offer.sdp"),
    ({"type": "offer", "sdp": "x" * 300_000}, "offer.sdp"),
    ({"type": "offer", "sdp": "v=0", "extra": 1}, "unknown field"),
    ({"type": "offer", "sdp": "not an sdp at all"}, "offer refused|unreadable"),
    ({"type": "renegotiate", "send": {"video": 99}}, "renegotiate.send"),
    ({"type": "renegotiate", "send": {"video": True}}, "renegotiate.send"),
    ({"type": "renegotiate", "send": {"screen": 1}}, "renegotiate.send"),
    ({"type": "candidate", "candidate": 5}, "candidate.candidate"),
    ({"type": "candidate", "candidate": "candidate:x", "sdpMLineIndex": "0"}, "sdpMLineIndex"),
    ({"type": "candidate", "candidate": "candidate:garbage"}, "bad ICE candidate"),
]


@pytest.mark.media
async def test_bad_messages_are_refused_and_the_call_still_connects(settings: MediaSettings) -> None:
    source = open_source(settings, "agent", rgb=BLUE)
    hub_side = MediaPeer(settings, local="agent", remote="v1", offerer=True)
    member = MediaMember(settings, local="v1", hub="agent", source=open_source(settings, "v1", rgb=GREEN))
    try:
        hub_side.send(source.video, "camera")
        for message, why in BAD:
            with pytest.raises(NegotiationError, match=why) as exc:
                await member.handle(message)
            assert exc.value.code is ErrorCode.bad_request
            assert exc.value.to_wire()["code"] == "bad_request"
        with pytest.raises(NegotiationError) as wrong_state:  # an answer nobody asked for
            await hub_side.handle({"type": "answer", "sdp": "v=0\r\n"})
        assert wrong_state.value.code is ErrorCode.invalid_state
        with pytest.raises(NegotiationError, match="offerer"):  # only the offerer offers again
            await member.handle({"type": "renegotiate", "send": {"video": 1}})

        offer = await hub_side.negotiate()
        assert offer is not None and offer["type"] == "offer"
        with pytest.raises(NegotiationError, match="glare"):  # an offer while ours is out
            await hub_side.handle({"type": "offer", "sdp": offer["sdp"]})
        answer = await member.handle(offer)
        assert answer is not None and answer["type"] == "answer"
        assert await hub_side.handle(answer) is None
        assert near(sample_rgb(await member.peer.next_frame()), BLUE)
        await hub_side.wait_connected()
        assert hub_side.connection_state == "connected"
    finally:
        await member.close()
        member.source.stop()
        await hub_side.close()
        source.stop()
    with pytest.raises(NegotiationError, match="closed"):
        await hub_side.negotiate()


@pytest.mark.media
async def test_candidates_can_arrive_trickled_apart_from_the_sdp(settings: MediaSettings) -> None:
    source = open_source(settings, "agent", rgb=BLUE)
    hub_side = MediaPeer(settings, local="agent", remote="v1", offerer=True)
    member = MediaMember(settings, local="v1", hub="agent", source=open_source(settings, "v1", rgb=GREEN))
    try:
        hub_side.send(source.video, "camera")
        offer = await hub_side.negotiate()
        assert offer is not None
        lines = offer["sdp"].splitlines()
        candidates = [ln[2:] for ln in lines if ln.startswith("a=candidate:")]
        bare = (
            "\r\n".join(ln for ln in lines if not ln.startswith(("a=candidate:", "a=end-of-candidates")))
            + "\r\n"
        )
        assert candidates and all(" 127.0.0.1 " in c and " typ host" in c for c in candidates)
        answer = await member.handle({"type": "offer", "sdp": bare})
        for c in candidates:
            await member.handle({"type": "candidate", "candidate": c, "sdpMid": "0", "sdpMLineIndex": 0})
        await member.handle({"type": "candidate", "candidate": ""})  # end of candidates
        await hub_side.handle(answer)
        assert near(sample_rgb(await member.peer.next_frame()), BLUE)
    finally:
        await member.close()
        member.source.stop()
        await hub_side.close()
        source.stop()


async def test_host_candidates_stay_on_the_configured_addresses(settings: MediaSettings) -> None:
    # aioice alone: every interface except loopback (so never 127.0.0.1)
    assert "127.0.0.1" not in gathered_addresses()
    with host_addresses(("127.0.0.1",)):
        assert gathered_addresses() == ["127.0.0.1"]
        with host_addresses(("127.0.0.1", "::1")):
            assert gathered_addresses(use_ipv6=False) == ["127.0.0.1"]
    assert "127.0.0.1" not in gathered_addresses()  # back to aioice's own choice
    with pytest.raises(MediaError), host_addresses(("localhost",)):
        pass
    peer = MediaPeer(settings, local="agent", remote="v1", offerer=True)
    source = open_source(settings, "agent")
    try:
        peer.send(source.audio, "mic")
        offer = await peer.negotiate()
        assert offer is not None
        found = [ln for ln in offer["sdp"].splitlines() if ln.startswith("a=candidate:")]
        assert found and all(ln.split()[4] == "127.0.0.1" and ln.split()[7] == "host" for ln in found)
    finally:
        await peer.close()
        source.stop()


def test_ice_servers_come_from_the_settings_only() -> None:
    assert rtc_configuration(MediaSettings()).iceServers == []  # never aiortc's public STUN default
    turn = IceServer(("turn:127.0.0.1:3478?transport=udp",), username="kefu", credential="secret")
    config = rtc_configuration(MediaSettings(ice_servers=(turn,)))
    assert [s.urls for s in config.iceServers] == [["turn:127.0.0.1:3478?transport=udp"]]
    assert config.iceServers[0].username == "kefu"
    with pytest.raises(MediaError, match="username"):
        IceServer(("turn:127.0.0.1:3478",))
    with pytest.raises(MediaError, match="stun:"):
        IceServer(("http://example.org",))
    with pytest.raises(MediaError):
        IceServer(())


@pytest.mark.media
async def test_a_member_asks_the_hub_to_offer(settings: MediaSettings) -> None:
    """The member never offers: it asks with ``renegotiate`` and binds its
    tracks to the slots of the hub's offer (here the hub sends nothing)."""
    hub_side = MediaPeer(settings, local="agent", remote="v1", offerer=True)
    member = MediaMember(settings, local="v1", hub="agent", source=open_source(settings, "v1", rgb=GREEN))
    try:
        request = await member.negotiate()
        assert request == {"type": "renegotiate", "send": {"video": 1, "audio": 1}}
        assert await member.negotiate() is None  # asked once, until an offer comes
        offer = await hub_side.handle(request)
        assert offer is not None and offer["sdp"].count("a=recvonly") == 2
        answer = await member.handle(offer)
        assert answer is not None and answer["sdp"].count("a=sendonly") == 2
        assert await hub_side.handle(answer) is None
        assert near(sample_rgb(await hub_side.next_frame()), GREEN)
        assert await member.negotiate() is None and await hub_side.negotiate() is None
        assert member.peer.sending == ("kefu.camera.v1", "kefu.mic.v1")
    finally:
        await member.close()
        member.source.stop()
        await hub_side.close()


@pytest.mark.media
async def test_closing_is_bounded_when_aiortc_hangs(settings: MediaSettings) -> None:
    """After a peer crashed, ``RTCPeerConnection.close()`` can hang: ours returns
    after ``close_timeout`` all the same."""
    peer = MediaPeer(replace(settings, close_timeout=0.05), local="agent", remote="v1", offerer=True)
    real_close = peer.pc.close
    never = asyncio.Event()

    async def hang() -> None:
        await never.wait()

    peer.pc.close = hang  # type: ignore[method-assign]
    await asyncio.wait_for(peer.close(), 2)
    assert peer.closed
    await real_close()
