"""The server's relay between members' ``signal`` messages and Janus, with real media.

The members here are :class:`kefu.media.SfuMember` objects driven over the
test clients' sockets, so what is checked is the server: publish, subscribe,
leave, and the errors for bad signalling. Everything runs in a network
namespace with Janus (``dc`` fixture)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from kefu.media import NegotiationNeeded, SfuMember, TrackAdded, colour_for, read_counter, sample_rgb
from kefu.protocol.sfu import SFU
from kefu.visitor.link import Link
from tests.conftest import scaled
from tests.media.conftest import Events, near
from tests.server.test_calls import call_event, state, visitor

from .conftest import DataCentre

pytestmark = pytest.mark.media


class Driven:
    """An :class:`SfuMember` whose signalling goes over a test client's socket."""

    def __init__(self, link: Link, member: SfuMember, call_id: str) -> None:
        self.link = link
        self.member = member
        self.call_id = call_id
        self.errors: list[Any] = []
        self.seen: list[dict[str, Any]] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self.events = Events()
        member.events.subscribe(self.events)
        member.events.subscribe(self._on_event)
        self._spawn(self._pump())

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _on_event(self, event: object) -> None:
        if isinstance(event, NegotiationNeeded):
            self._spawn(self._offer())

    async def send(self, data: dict[str, Any]) -> dict[str, Any]:
        return await self.link.request("signal", {"callId": self.call_id, "to": SFU, "data": data})

    async def _offer(self) -> None:
        offer = await self.member.negotiate()
        if offer is not None:
            reply = await self.send(offer)
            if reply.get("subMark") == "error":
                self.errors.append(reply)

    async def _pump(self) -> None:
        while True:
            try:
                msg = await self.link.next_event("signal")
            except TimeoutError:
                continue
            payload = msg["payload"]
            assert payload["from"] == SFU, payload
            self.seen.append(payload["data"])
            reply = await self.member.handle(payload["data"])
            if reply is not None:
                answer = await self.send(reply)
                if answer.get("subMark") == "error":
                    self.errors.append(answer)

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        with contextlib.suppress(BaseException):
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.member.close()


@contextlib.asynccontextmanager
async def driven(link: Link, member: SfuMember, call_id: str) -> AsyncIterator[Driven]:
    d = Driven(link, member, call_id)
    try:
        yield d
    finally:
        await d.aclose()


async def _call(dc: DataCentre) -> tuple[Any, Link, str]:
    """Agent a1 calls visitor v1, who accepts: a connected call in the SFU mode."""
    server = dc.server
    agent = await server.agent("a1", ready=True)
    v = await visitor(server, "v1")
    reply = await agent.call("callbackToVisitor", {"visitorName": "v1"})
    call_id = reply["payload"]["callId"]
    ringing = await call_event(v, "invited")
    assert ringing["media"] == "sfu"
    answered = await v.call("answerCall", {"callId": call_id, "answer": "accept"})
    assert answered["payload"]["media"] == "sfu"
    await state(agent, "003001")
    await state(agent, "006011")
    update = await call_event(agent.link, "update")
    assert update["media"] == "sfu"
    return agent, v, call_id


async def test_two_members_see_each_other_through_janus(dc: DataCentre) -> None:
    agent, v, call_id = await _call(dc)
    relay = dc.server.services.calls.sfu.relay  # type: ignore[union-attr]
    assert colour_for("a1") != colour_for("v1")
    a_media = SfuMember(dc.media, local="a1", call_id=call_id)
    v_media = SfuMember(dc.media, local="v1", call_id=call_id)
    async with driven(agent.link, a_media, call_id) as a, driven(v, v_media, call_id) as b:
        # the subscriptions come once both publishers are up: wait for the frames
        frame_v = await _next_frame(a, "v1")
        assert near(sample_rgb(frame_v), colour_for("v1"))
        frame_a = await _next_frame(b, "a1")
        assert near(sample_rgb(frame_a), colour_for("a1"))
        later = await _next_frame(a, "v1")
        assert read_counter(later) > read_counter(frame_v)
        sent = v_media.source.video.counter  # type: ignore[attr-defined]
        assert sent - 2 * dc.media.fps <= read_counter(later) <= sent  # live, not old frames
        assert a.errors == b.errors == []
        offers = [d for d in a.seen if d["type"] == "offer"]
        assert [o["feed"] for o in offers] == [{"kind": "visitor", "name": "v1"}]
        assert "secret" not in repr(a.seen + b.seen)
        room = await dc.server.services.calls.sfu.room_of(call_id)  # type: ignore[union-attr]
        assert room is not None
        names = sorted(p.get("display") for p in await relay.janus.participants(room))
        assert names == ["agent:a1", "visitor:v1"]

        await agent.call("videoDisconnect")
        await call_event(v, "ended")
        await relay.settled()
        assert relay._calls == {}  # every handle of the call detached


async def _next_frame(d: Driven, name: str, within: float = scaled(15.0)) -> Any:
    """The next camera frame of ``name`` at ``d``'s member, once its subscription exists."""
    await d.events.wait_for(lambda e: isinstance(e, TrackAdded) and e.member == name, within)
    return await d.member.subscription(name).next_frame(name, within=within)


SDP = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n"


async def test_bad_signalling_to_the_sfu_is_refused_and_changes_nothing(dc: DataCentre) -> None:
    agent, v, call_id = await _call(dc)
    outsider = await visitor(dc.server, "v2")

    async def refused(link: Link, data: Any, to: Any = SFU) -> str:
        reply = await link.request("signal", {"callId": call_id, "to": to, "data": data})
        assert reply["subMark"] == "error", reply
        return str(reply["error"]["code"])

    assert await refused(v, {"type": "offer", "sdp": "not an sdp"}) == "invalid_field"
    assert await refused(v, {"type": "offer", "sdp": SDP, "extra": 1}) == "invalid_field"
    assert await refused(v, {"type": "bye"}) == "invalid_field"
    assert await refused(v, ["offer"]) == "invalid_field"
    feed = {"kind": "agent", "name": "a1"}
    # an answer to an offer the server never made
    assert await refused(v, {"type": "answer", "sdp": SDP, "feed": feed}) == "invalid_field"
    assert await refused(v, {"type": "answer", "sdp": SDP, "feed": {"kind": "sfu", "name": "x"}}) == (
        "invalid_field"
    )
    assert await refused(
        v, {"type": "candidate", "candidate": "candidate:1 1 udp 1 10.0.0.1 9 typ host"}
    ) == (
        "invalid_field"  # no publisher of v1's yet
    )
    assert (
        await refused(v, {"type": "offer", "sdp": SDP}, {"kind": "sfu", "name": "janus"}) == "invalid_field"
    )
    assert await refused(agent.link, {"type": "offer", "sdp": "x"}) == "invalid_field"
    # only the call's joined members may signal
    assert await refused(outsider, {"type": "offer", "sdp": SDP}) == "forbidden"
    # the connections are intact, and nothing was made in Janus
    assert (await v.call("ping"))["subMark"] == "pong"
    relay = dc.server.services.calls.sfu.relay  # type: ignore[union-attr]
    room = await dc.server.services.calls.sfu.room_of(call_id)  # type: ignore[union-attr]
    assert room is not None
    assert await relay.janus.participants(room) == []


async def test_signalling_to_the_sfu_in_the_hub_mode_is_refused(server: Any) -> None:
    agent = await server.agent("a1", ready=True)
    v = await visitor(server, "v1")
    call_id = (await agent.call("callbackToVisitor", {"visitorName": "v1"}))["payload"]["callId"]
    answered = await v.call("answerCall", {"callId": call_id, "answer": "accept"})
    assert answered["payload"]["media"] == "hub"
    reply = await v.request("signal", {"callId": call_id, "to": SFU, "data": {"type": "offer", "sdp": SDP}})
    assert reply["error"]["code"] == "invalid_field", reply
    assert (await v.call("ping"))["subMark"] == "pong"
