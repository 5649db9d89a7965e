"""The spec's own sample code (SPEC §3, §4, §5), unchanged, in a workstation
page in Chromium, against the real server and plugin, with Python visitors
and agents around it. Each callback's data is recorded by the page's harness
(``window.__calls``) and checked here."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Callable
from pathlib import Path

import pytest
from playwright.async_api import BrowserContext

from kefu.plugin.window import WindowState
from kefu.protocol.wire import Json
from kefu.visitor import MediaStatus
from tests.server.clients import AgentClient

from .harness import LIMIT, wait_js
from .workstation import SPEC_AGENT, Workstation

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="session")]


async def test_init_window_login_im_and_queries(context: BrowserContext, tmp_path: Path) -> None:
    async with Workstation.open(context, tmp_path, media=None) as ws:
        await ws.init()
        assert await ws.js("() => window.__sockets") == ["ws://127.0.0.1:1040"]  # the sample's own URL
        success = (await ws.calls("IMClient", "success"))[0]["args"][0]
        assert success["payload"]["browser"] is True
        assert await ws.js("() => [client.linkStatus, client.ready]") == [True, False]
        sso = await ws.calls("IMClient", "ssoReady")
        names = [c["name"] for c in await ws.recorded()]
        assert names.index("success") < names.index("ssoReady")  # connected, then ready for a login
        assert sso[0]["args"][0]["payload"]["server"] == ws.stack.server.url

        # SPEC §4.1 startLogin, unchanged: its URL is the vendor's host, which the plugin never fetches
        await ws.run_ok("s4_startLogin")
        err = (await ws.calls("startLogin", "error"))[0]["args"][0]
        assert err["code"] == "invalid_field" and err["error"]["field"] == "params.data.url"
        await ws.login()  # the same agent (23160006 / 76160006) on the test's server
        ready = (await ws.calls("IMClient", "kefuReady"))[0]["args"][0]
        assert ready["payload"]["agent"]["name"] == SPEC_AGENT and ready["payload"]["state"] == "001000"
        assert await ws.logs() == [
            ["成功连接", success],
            ["进入单点登录页面了,可以登录了 123+"],
            ["进入客服系统了,可以退出了 123-"],
        ]


async def test_window_im_and_query_samples(context: BrowserContext, tmp_path: Path) -> None:
    async with Workstation.open(context, tmp_path, media=None) as ws:
        await ws.init()
        await ws.login()
        window = ws.stack.p.window
        changes: asyncio.Queue[WindowState] = asyncio.Queue()
        window.on_change(lambda _old, new: changes.put_nowait(new))

        async def wait_until(ok: Callable[[WindowState], bool]) -> None:
            while not ok(window.state):
                await asyncio.wait_for(changes.get(), LIMIT)

        # SPEC §4.1: the window samples (they have no callbacks: the plugin's window shows them)
        await ws.run_ok("s4_setWindowSize")
        await ws.run_ok("s4_minimize")
        await wait_until(lambda w: (w.width, w.height, w.minimized) == (300, 400, True))
        await ws.run_ok("s4_restore")
        await wait_until(lambda w: not w.minimized)
        await ws.run_ok("s4_startup")
        await wait_until(lambda w: w.visible)

        # SPEC §4.2: a visitor waits; the sample picks the session up by `serviceSessionId`
        v = await ws.visitor("v1")
        sid = (await v.send_message("hello"))["sessionId"]
        await ws.set_global("serviceSessionId", sid)
        await ws.run_ok("s4_pickUpSession")
        picked = (await ws.calls("pickUpSession", "success"))[0]["args"][0]
        assert picked["payload"]["sessionId"] == sid and picked["payload"]["status"] == "open"
        assert ["IM接起成功!", picked] in await ws.logs()  # the sample's own console.log

        # SPEC §4.6
        await ws.run_ok("s4_sessionCount")
        count = (await ws.calls("sessionCount", "success"))[0]["args"][0]
        assert count["payload"]["sessionCount"] == 1
        assert (await ws.logs())[-1] == [1]  # console.log(data.payload.sessionCount)
        await ws.run_ok("s4_sessionState")
        sessions = (await ws.calls("sessionState", "success"))[0]["args"][0]["payload"]["sessions"]
        assert [s["sessionId"] for s in sessions] == [sid]
        await ws.run_ok("s4_isMultipleVideo")
        assert (await ws.calls("isMultipleVideo", "success"))[0]["args"][0]["data"] is False
        await ws.run_ok("s4_isShareState")
        assert (await ws.calls("isShareState", "success"))[0]["args"][0]["data"] is False

        # SPEC §4.2 chatClose: the init sample's chatCloseCB hears it (SPEC §3.2)
        await ws.run_ok("s4_chatClose")
        closed = (await ws.calls("initInnerCallBack", "chatCloseCB"))[0]["args"][0]
        assert closed["payload"]["sessionId"] == sid and closed["payload"]["by"] == "agent"

        # SPEC §4.1 quit: the plugin stops; the sample's `error` is not called for it
        await ws.run_ok("s4_quit")
        await asyncio.wait_for(ws.stack.p.wait_stopped(), LIMIT)
        await wait_js(ws.page, "() => client.linkStatus === false")
        assert [c for c in await ws.recorded() if c["api"] == "IMClient" and c["name"] == "error"] == []


async def call_event(agent: AgentClient, what: str) -> Json:
    """The agent's next ``call`` push about ``what``."""
    while True:
        msg = await agent.next_event("call")
        if msg["payload"]["what"] == what:
            payload: Json = msg["payload"]
            return payload


async def agent_state(agent: AgentClient, code: str) -> None:
    """Until the agent's state push of ``code``."""
    while (await agent.next_event(mark="state"))["state"] != code:
        pass


def only(records: list[Json]) -> list[tuple[str, str | None]]:
    """(callback, state) of each record, in order."""
    return [(r["name"], r["args"][0].get("state")) for r in records]


async def test_call_samples_v1204(context: BrowserContext, tmp_path: Path) -> None:
    async with Workstation.open(context, tmp_path, media=None) as ws:
        await ws.init()
        await ws.login()
        assert await ws.set_state("idle") == "002000"

        # callbackToVisitor: the visitor named in the sample, "XXXX", accepts
        await ws.visitor("XXXX")
        await ws.run_ok("s4_callbackToVisitor")
        got = await ws.calls("callbackToVisitor", count=2)
        assert only(got) == [("inviteSuccess", "003001"), ("acceptSuccess", "006011")]
        assert ["外呼-访客接受邀请", got[1]["args"][0]] in await ws.logs()

        # videoInviteAgent: the agent named in the sample, "XXXX", joins, then leaves
        xxxx = await ws.agent("XXXX")
        await ws.run_ok("s4_videoInviteAgent")
        assert only(await ws.calls("videoInviteAgent")) == [("inviteSuccess", "007002")]
        await call_event(xxxx, "invited")
        assert (await xxxx.call("multipleVideoPickUp"))["state"] == "006014"
        await ws.calls("videoInviteAgent", "acceptSuccess")
        await ws.run_ok("s4_isMultipleVideo")  # SPEC §4.6 (v1211): true in a three-party video
        assert (await ws.calls("isMultipleVideo", "success"))[0]["args"][0]["data"] is True
        assert (await xxxx.call("videoDisconnect"))["state"] == "005010"
        got = await ws.calls("videoInviteAgent", count=3)
        assert only(got) == [
            ("inviteSuccess", "007002"),
            ("acceptSuccess", "008002"),
            ("exitSuccess", "006010"),
        ]

        # videoInviteVisitor: "XXXX" is in this very call: busy
        await ws.run_ok("s4_videoInviteVisitor")
        assert only(await ws.calls("videoInviteVisitor")) == [("videoBusyMark", "006002")]

        # videoDisconnect: the call-out ends with the agent's hang-up
        await ws.run_ok("s4_videoDisconnect")
        got = await ws.calls("callbackToVisitor", count=3)
        assert only(got)[2] == ("kefuCloseVideoSuccess", "005004")

        # videoInviteCurrentVisitor: the visitor of the session picked up by `serviceSessionId`
        v1 = await ws.visitor("v1")
        await ws.set_global("serviceSessionId", (await v1.send_message("hello"))["sessionId"])
        await ws.run_ok("s4_pickUpSession")
        await ws.run_ok("s4_videoInviteCurrentVisitor")
        await ws.calls("videoInviteCurrentVisitor", "acceptSuccess")
        await v1.hangup()
        got = await ws.calls("videoInviteCurrentVisitor", count=3)
        assert only(got) == [
            ("inviteSuccess", "003002"),
            ("acceptSuccess", "006012"),
            ("visitorDisconnect", "005005"),
        ]

        # videoPickUp: v1 asks for video; the sample picks it up; v1 hangs up after joining
        assert await ws.set_state("idle") == "002000"
        await v1.request_video()
        await ws.wait_state("004001")
        await ws.run_ok("s4_videoPickUp")
        await ws.wait_state("006013")  # v1 joined by itself
        await v1.hangup()
        got = await ws.calls("videoPickUp", count=2)
        assert only(got) == [("success", "004001"), ("visitorDisconnect", "005007")]
        assert ["音视频接通后访客端引起的挂断", got[1]["args"][0]] in await ws.logs()

        # multipleVideoPickUp: another agent calls v2 and invites this one
        assert await ws.set_state("idle") == "002000"
        boss = await ws.agent("boss")
        await ws.visitor("v2")
        await boss.call("callbackToVisitor", {"visitorName": "v2", "startVideo": True})
        await agent_state(boss, "006011")
        assert (await boss.call("videoInviteAgent", {"agentName": SPEC_AGENT}))["state"] == "007002"
        await ws.wait_state("004002")
        await ws.run_ok("s4_multipleVideoPickUp")
        await ws.calls("multipleVideoPickUp", "acceptSuccess")
        await boss.call("videoDisconnect")
        got = await ws.calls("multipleVideoPickUp", count=2)
        assert only(got) == [("acceptSuccess", "006014"), ("kefuCloseVideoSuccess", "005010")]


async def test_call_samples_v190307(context: BrowserContext, tmp_path: Path) -> None:
    async with Workstation.open(context, tmp_path, media=None) as ws:
        await ws.init()
        await ws.login()

        # Two samples of SPEC §5 are not JavaScript: run unchanged, they raise a SyntaxError
        # and send nothing (pages/samples/*.fixed.js differ by the one character or line).
        for broken in ("s5_callbackToVisitor", "s5_videoPickUp"):
            errors = await ws.run(broken)
            assert len(errors) == 1 and "SyntaxError" in errors[0]["message"], errors
        assert [c for c in await ws.recorded() if c["api"] in ("callbackToVisitor", "videoPickUp")] == []

        # videoPickUp: v1's session (picked up), v1 asks for video, the sample picks it up
        v1 = await ws.visitor("v1")
        sid = (await v1.send_message("hello"))["sessionId"]
        await ws.set_global("serviceSessionId", sid)
        await ws.js("sid => client.pickUpSession({session_id: sid})", sid)
        assert await ws.set_state("idle") == "002000"
        await v1.request_video()
        await ws.wait_state("004001")
        await ws.run_ok("s5_videoPickUp.fixed")
        assert await ws.states("videoPickUp", 2) == ["004001", "006013"]

        # videoInviteVisitor: "XXXX" joins as the third visitor; the agent hangs up
        await ws.visitor("XXXX")
        await ws.run_ok("s5_videoInviteVisitor")
        assert await ws.states("videoInviteVisitor", 2) == ["007001", "008001"]
        await ws.js("() => client.videoDisconnect()")
        assert await ws.states("videoInviteVisitor", 3) == ["007001", "008001", "005001"]
        # SPEC §5.3.1: `if (state = 006001)` assigns, so the sample logs its first line every time
        assert (await ws.logs()).count(["邀请三方访客-访客拒接邀请"]) == 3

        # callbackToVisitor (the corrected copy) to "XXXX", who accepts
        assert await ws.set_state("idle") == "002000"
        await ws.run_ok("s5_callbackToVisitor.fixed")
        assert await ws.states("callbackToVisitor", 2) == ["003001", "006011"]

        # videoInviteAgent: the agent "XXXX" joins, then leaves (006010)
        xxxx = await ws.agent("XXXX")
        await ws.run_ok("s5_videoInviteAgent")
        await ws.states("videoInviteAgent", 1)
        await call_event(xxxx, "invited")
        await xxxx.call("multipleVideoPickUp")
        await ws.states("videoInviteAgent", 2)
        await xxxx.call("videoDisconnect")
        assert await ws.states("videoInviteAgent", 3) == ["007002", "008002", "006010"]

        # the visitor hangs up: the call-out's callback hears 005003
        await ws.wait_state("006010")
        await next(v for v in ws.visitors if v.name == "XXXX").hangup()
        assert await ws.states("callbackToVisitor", 3) == ["003001", "006011", "005003"]

        # videoInviteCurrentVisitor(null, cb): v1, the visitor of the current session
        assert await ws.set_state("idle") == "002000"
        await ws.run_ok("s5_videoInviteCurrentVisitor")
        assert await ws.states("videoInviteCurrentVisitor", 2) == ["003002", "006012"]
        await ws.js("() => client.videoDisconnect()")
        assert await ws.states("videoInviteCurrentVisitor", 3) == ["003002", "006012", "005006"]

        # multipleVideoPickUp(null, cb): another agent calls v2 and invites this one; v2 hangs up
        assert await ws.set_state("idle") == "002000"
        boss = await ws.agent("boss")
        v2 = await ws.visitor("v2")
        await boss.call("callbackToVisitor", {"visitorName": "v2", "startVideo": True})
        await agent_state(boss, "006011")
        await boss.call("videoInviteAgent", {"agentName": SPEC_AGENT})
        await ws.wait_state("004002")
        await ws.run_ok("s5_multipleVideoPickUp")
        assert await ws.states("multipleVideoPickUp", 1) == ["006014"]
        await v2.hangup()
        assert await ws.states("multipleVideoPickUp", 2) == ["006014", "005009"]


async def test_photo_snapshot_and_share_samples(context: BrowserContext, tmp_path: Path) -> None:
    async with Workstation.open(context, tmp_path) as ws:  # with the plugin's media
        await ws.init()
        await ws.login()
        assert await ws.set_state("idle") == "002000"
        xxxx = await ws.visitor("XXXX")
        await ws.run_ok("s4_callbackToVisitor")
        accepted = (await ws.calls("callbackToVisitor", "acceptSuccess"))[0]["args"][0]
        await xxxx.wait_for(MediaStatus, lambda e: e.status == "connected", within=LIMIT)
        media = ws.stack.p.media
        assert media is not None
        hub = media.calls[accepted["payload"]["callId"]].hub  # type: ignore[union-attr]
        await hub.peer("XXXX").next_frame("XXXX", within=LIMIT)  # the hub has the visitor's video

        # SPEC §4.4 snapshot: the plugin's JPEG of the visitor's latest frame
        await ws.run_ok("s4_snapshot")
        shot = (await ws.calls("snapshot", "success"))[0]["args"][0]["payload"]
        assert shot["mime"] == "image/jpeg" and shot["visitorName"] == "XXXX"
        assert base64.b64decode(shot["base64"])[:2] == b"\xff\xd8" and shot["width"] > 0
        # SPEC §4.4 takePhoto: the visitor's own full-resolution still
        await ws.run_ok("s4_takePhoto")
        photo = (await ws.calls("takePhoto", "success"))[0]["args"][0]["payload"]
        assert (photo["width"], photo["height"]) == (1280, 720) and photo["visitorName"] == "XXXX"
        logged = [
            line for line in await ws.logs() if line[1:] == ["拍照数据"]
        ]  # console.log(data, '拍照数据')
        assert len(logged) == 1 and logged[0][0]["payload"]["artifactId"] == photo["artifactId"]

        # SPEC §4.5 inviteShare: the visitor shares (a synthetic screen), then stops
        await ws.run_ok("s4_inviteShare")
        opened = (await ws.calls("inviteShare", "open"))[0]["args"][0]
        assert opened["subMark"] == "open"
        await ws.run_ok("s4_isShareState")
        assert (await ws.calls("isShareState", "success"))[0]["args"][0]["data"] is True
        await xxxx.stop_share()
        closed = (await ws.calls("inviteShare", "close"))[0]["args"][0]
        assert closed["subMark"] == "close"
        await ws.run_ok("s4_videoDisconnect")
        await ws.calls("callbackToVisitor", "kefuCloseVideoSuccess")

        # a visitor who allows no photo: the spec's own error message, exactly
        assert await ws.set_state("idle") == "002000"
        await ws.visitor("shy", allow_photo=False)
        await ws.js("() => client.callbackToVisitor({visitorName: 'shy', startVideo: true})")
        await ws.wait_state("006011")
        await ws.run_ok("s4_takePhoto")
        err = (await ws.calls("takePhoto", "error"))[0]["args"][0]
        assert {k: err[k] for k in ("mark", "subMark", "error")} == {
            "mark": "takePhoto",
            "subMark": "error",
            "error": {"type": "snapShotDisabled", "msg": "snapShotDisabled"},
        }
