"""A visitor whose connection dies mid-call: the server waits ``--call-grace``
seconds for it, then hangs it up; the agent gets its 005xxx with
``visitorDisconnect`` (SPEC §4.3 v1220), and the call record says why."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from kefu.visitor import CallUpdate, Visitor
from tests.conftest import ServerHandle
from tests.plugin.harness import LIMIT, Proxy

from .callkit import AgentSide

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
