"""A visitor whose connection dies mid-call: the server waits ``--call-grace``
seconds for it, then hangs it up; the agent gets its 005xxx with
``visitorDisconnect`` (SPEC §4.3 v1220), and the call record says why."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import pytest

from kefu.visitor import CallUpdate, MediaStatus, Visitor
from tests.conftest import ServerHandle
from tests.plugin.harness import LIMIT, Proxy

from .callkit import SMALL_MEDIA, AgentSide, login_url, plugin_process

GRACE = 0.5
pytestmark = pytest.mark.server_settings(ring_timeout=5.0, call_grace=GRACE)


async def test_a_visitor_whose_connection_dies_mid_call_is_hung_up_after_the_grace(
    server: ServerHandle, tmp_path: Path
) -> None:
    await server.add_agent("a1")
    a1 = await AgentSide(server, "a1", tmp_path / "plugin").start(ready=True)
    proxy = Proxy(int(server.url.rsplit(":", 1)[1]))  # the visitor's network, cut by the test
    await proxy.start()
    v = Visitor(proxy.url, "v1", on_invite="accept", timeout=5.0)
    try:
        await v.connect()
        c = a1.call("callbackToVisitor", {"visitorName": "v1"})
        call_id = (await c.callback("acceptSuccess", "006011"))["payload"]["callId"]
        await v.wait_for(CallUpdate, lambda e: e.what == "invited")
        await v.settled()
        cut = time.monotonic()
        await proxy.cut()  # no close frame: the connection just dies
        ended = await c.callback("visitorDisconnect", "005003", within=GRACE + LIMIT)
        waited = time.monotonic() - cut
        assert GRACE * 0.9 <= waited <= GRACE + 5.0, waited
        assert ended["payload"]["reason"] == "visitor_disconnected"
        _, closed = await a1.inner.find(lambda e: e[0] == "videoCloseCB")
        assert (
            closed["payload"]["callId"] == call_id and closed["payload"]["reason"] == "visitor_disconnected"
        )
        record = await server.services.calls.get_call(call_id)
        assert record is not None
        assert (record["endedBy"], record["endReason"], record["status"]) == (
            "v1",
            "visitor_disconnected",
            "ended",
        )
        visitor = next(m for m in record["members"] if m["kind"] == "visitor")
        assert (visitor["outcome"], visitor["reason"]) == ("left", "visitor_disconnected")
        assert visitor["leftAt"] is not None
    finally:
        await v.aclose()
        await proxy.aclose()
        await a1.close()


async def test_media_requests_the_visitor_never_answers_time_out(
    server: ServerHandle, tmp_path: Path
) -> None:
    """takePhoto and inviteShare wait for the visitor at most ``--media-timeout``: then ``timeout``."""
    from tests.plugin.harness import Visitor as RawVisitor

    await server.add_agent("a1")
    a1 = await AgentSide(server, "a1", tmp_path / "plugin", media_timeout=0.5).start(ready=True)
    try:
        async with RawVisitor.connect(server, "v1") as raw:  # type: ignore[arg-type]
            c = a1.call("callbackToVisitor", {"visitorName": "v1"})
            while (msg := await raw.event("call"))["payload"]["what"] != "invited":
                pass
            await raw.request("answerCall", {"callId": msg["payload"]["callId"], "answer": "accept"})
            await c.callback("acceptSuccess", "006011")
            started = time.monotonic()
            err = await a1.call("takePhoto").callback("error")
            assert err["error"]["code"] == "timeout" and err["state"] == "006011"
            assert 0.4 <= time.monotonic() - started < LIMIT
            assert (await raw.event("photoRequest"))["payload"]["callId"] == msg["payload"]["callId"]
            share = a1.call("inviteShare")
            err = await share.callback("error")
            assert err["error"]["code"] == "timeout" and share.names == ["error"]
            await raw.event("shareRequest")
            # the call goes on: the agent hangs up as usual
            await a1.call("videoDisconnect").callback("success", "005004")
            await c.callback("kefuCloseVideoSuccess", "005004")
    finally:
        await a1.close()


@pytest.mark.media
@pytest.mark.server_settings(ring_timeout=5.0, call_grace=60.0)
async def test_a_plugin_killed_mid_call_and_back_within_the_grace_ends_the_call_at_once(
    server: ServerHandle, tmp_path: Path
) -> None:
    """``kill -9`` of the agent's plugin during a media call, a new plugin logged in
    well within the grace: the new process has none of the call's media, so the
    call ends at once with ``agent_media_lost`` — the agent leaves 006011, the
    visitor is told, the record blames the agent's side — instead of staying
    connected and silent until someone hangs up."""
    await server.add_agent("a1")
    media = ("--no-record",)
    v = await server.visitor("v1", on_invite="accept", media=SMALL_MEDIA)
    first: AgentSide | None = None
    second: AgentSide | None = None
    try:
        async with plugin_process(server, tmp_path / "p1", tmp_path / "p1.log", *media) as p1:
            first = await AgentSide.of_process(server, "a1", p1.url, p1.token).start(ready=True)
            c = first.call("callbackToVisitor", {"visitorName": "v1"})
            call_id = (await c.callback("acceptSuccess", "006011"))["payload"]["callId"]
            await v.wait_for(MediaStatus, lambda e: e.status == "connected", within=LIMIT)
            assert v.media is not None
            await v.media.peer.next_frame("a1", "camera", within=LIMIT)
            p1.proc.send_signal(signal.SIGKILL)
            assert await asyncio.wait_for(p1.proc.wait(), LIMIT) == -signal.SIGKILL
            await first.close()
            first = None
        async with plugin_process(server, tmp_path / "p2", tmp_path / "p2.log", *media) as p2:
            second = AgentSide.of_process(server, "a1", p2.url, p2.token)
            await second.start()  # logs in: the grace is cancelled
            logged_in = time.monotonic()
            # the agent leaves 006011 as a hang-up (SPEC §5.2 005004), with the reason
            left = await second.state("005004")
            assert (left["old"], left["reason"], left["callId"]) == ("006011", "agent_media_lost", call_id)
            assert left["subMark"] == "kefuCloseVideoSuccess"
            _, closed = await second.inner.find(lambda e: e[0] == "videoCloseCB")
            assert (closed["payload"]["callId"], closed["payload"]["reason"]) == (call_id, "agent_media_lost")
            # the visitor is told, and its media closes
            ended = await v.wait_for(CallUpdate, lambda e: e.what == "ended", within=LIMIT)
            assert (ended.call_id, ended.by, ended.reason) == (call_id, "a1", "agent_media_lost")
            await v.wait_for(MediaStatus, lambda e: e.status == "closed", within=LIMIT)
            assert time.monotonic() - logged_in < LIMIT  # at once, not after the 60 s grace
            record = await server.services.calls.get_call(call_id)
            assert record is not None
            assert (record["status"], record["endedBy"], record["endReason"]) == (
                "ended",
                "a1",
                "agent_media_lost",
            )
            members = {m["name"]: m for m in record["members"]}
            assert (members["a1"]["outcome"], members["a1"]["reason"]) == ("left", "agent_media_lost")
            assert (members["v1"]["outcome"], members["v1"]["reason"]) == ("left", "agent_media_lost")
            # the new plugin takes the next call, with media
            await second.set_ready()
            c2 = second.call("callbackToVisitor", {"visitorName": "v1"})
            call2 = (await c2.callback("acceptSuccess", "006011"))["payload"]["callId"]
            assert call2 != call_id
            await v.wait_for(
                MediaStatus, lambda e: e.status == "connected" and e.call_id == call2, within=LIMIT
            )
            await second.call("videoDisconnect").callback("success", "005004")
    finally:
        for side in (first, second):
            if side is not None:
                await side.close()


@pytest.mark.media
async def test_a_plugin_that_logs_in_again_keeps_its_call_and_media(
    server: ServerHandle, tmp_path: Path
) -> None:
    """The same plugin process logging in again during a call holds the call's media:
    it says so (``mediaCalls``), and the call goes on, frames and all."""
    await server.add_agent("a1")
    a1 = AgentSide(server, "a1", tmp_path / "plugin", media=SMALL_MEDIA)
    try:
        await a1.start(ready=True)
        v = await server.visitor("v1", on_invite="accept", media=SMALL_MEDIA)
        c = a1.call("callbackToVisitor", {"visitorName": "v1"})
        call_id = (await c.callback("acceptSuccess", "006011"))["payload"]["callId"]
        await v.wait_for(MediaStatus, lambda e: e.status == "connected", within=LIMIT)
        assert v.media is not None
        await v.media.peer.next_frame("a1", "camera", within=LIMIT)
        login = a1.call("startLogin", {"data": {"url": login_url(server, "a1")}})
        assert (await login.callback("success"))["state"] == "006011"
        await v.media.peer.next_frame("a1", "camera", within=LIMIT)  # the media goes on
        await a1.call("videoDisconnect").callback("success", "005004")  # still in the call
        ended = await v.wait_for(CallUpdate, lambda e: e.what == "ended", within=LIMIT)
        assert (ended.call_id, ended.reason) == (call_id, "hangup")
    finally:
        await a1.close()
