"""Every state code of SPEC §5.2 and the two ringing codes, reached through
the public APIs: server + plugins + ``IMClient`` (both conventions on every
call) + Python visitors, on loopback. ``callkit.CODE_TABLE`` says which
scenario (test) reaches each code and through which callback; each test
fails if one of its codes was not reached in both conventions.

The plugins run without media here (``--no-media``: the codes do not depend
on it, and the media has its own tests in ``test_call_media.py``)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest

from kefu.visitor import CallUpdate, SessionAssigned, Visitor
from tests.conftest import ServerHandle
from tests.plugin.harness import LIMIT, Proxy
from tests.plugin.harness import Visitor as RawVisitor

from .callkit import CODE_TABLE, AgentSide, Reach

RING = 1.5  # seconds an invitation rings here (short, but not raced by a loaded machine)
pytestmark = pytest.mark.server_settings(ring_timeout=RING, call_grace=0.5)


class Scene:
    """Agents and visitors of one test, closed at its end."""

    def __init__(self, server: ServerHandle, tmp_path: Path, stack: AsyncExitStack) -> None:
        self.server = server
        self.tmp_path = tmp_path
        self.stack = stack

    async def agent(self, name: str, *, ready: bool = False, add: bool = True, **kw: Any) -> AgentSide:
        if add:
            await self.server.add_agent(name)
        side = AgentSide(self.server, name, self.tmp_path / f"plugin-{name}", **kw)
        self.stack.push_async_callback(side.close)
        return await side.start(ready=ready)

    async def visitor(self, name: str, **kw: Any) -> Visitor:
        return await self.server.visitor(name, **kw)

    async def raw(self, name: str) -> RawVisitor:
        """A visitor that does only what the test says (no automatic join or answer)."""
        return await self.stack.enter_async_context(RawVisitor.connect(self.server, name))  # type: ignore[arg-type]


@pytest.fixture
async def scene(server: ServerHandle, tmp_path: Path) -> AsyncIterator[Scene]:
    async with AsyncExitStack() as stack:
        yield Scene(server, tmp_path, stack)


async def invited(v: RawVisitor) -> str:
    """The call id of the next invitation the raw visitor gets."""
    while True:
        msg = await v.event("call")
        if msg["payload"]["what"] == "invited":
            return str(msg["payload"]["callId"])


def test_the_table_covers_every_code() -> None:
    """SPEC §5.2's 45 codes (tests/data/states.json) and the two ringing codes (§5.3.5)."""
    spec = json.loads((Path(__file__).parent.parent / "data" / "states.json").read_text(encoding="utf-8"))
    codes = {row["code"] for row in spec}
    assert len(codes) == 45
    assert set(CODE_TABLE) == codes | {"004001", "004002"}


async def test_login_codes(scene: Scene) -> None:
    reach = Reach("login")
    a1 = await scene.agent("a1", ready=True)
    await reach.call(a1.call("logout"), "000000")
    reach.done()


async def test_call_visitor_codes(scene: Scene) -> None:
    """callbackToVisitor: every outcome with its code and its v1204 callback."""
    reach = Reach("callVisitor")
    a2 = await scene.server.agent("a2", ready=True)  # another agent, with a session of its own
    a1 = await scene.agent("a1")  # not ready: sessions go to a2
    theirs = await scene.visitor("v-theirs")
    await theirs.send_message("hello")
    await theirs.wait_for(SessionAssigned)
    assert a2.token
    # SPEC §4.3's errors: SDK_08 (no such visitor), SDK_11 (in a session with another agent)
    err = await reach.call(
        a1.call("callbackToVisitor", {"visitorName": "nobody", "startVideo": True}), "002004"
    )
    assert err["error"] == {
        "code": "SDK_08",
        "msg": "查询id出错,请检查访客信息是否正确",
    }  # the seed's language
    err = await reach.call(a1.call("callbackToVisitor", {"visitorName": "v-theirs"}), "002004")
    assert err["error"]["code"] == "SDK_11" and err["error"]["msg"]
    # refused
    v = await scene.visitor("v1", on_invite="refuse")
    c = a1.call("callbackToVisitor", {"visitorName": "v1", "startVideo": True})
    sent = await reach.call(c, "003001")
    call_id = sent["payload"]["callId"]
    refused = await reach.call(c, "002001")
    assert refused["payload"]["callId"] == call_id and refused["payload"]["requestId"] is None
    # a call API the state does not allow: a clear error, nothing changes
    # (checked while ringing below)
    # no answer within the ringing timeout
    v.on_invite = "ignore"
    c = a1.call("callbackToVisitor", {"visitorName": "v1"})
    await reach.call(c, "003001")
    before = len(a1.states.items)
    wrong = a1.call("videoPickUp", {"session_id": "nope"})
    assert (await wrong.callback("error"))["error"]["code"] == "invalid_state"
    again = a1.call("callbackToVisitor", {"visitorName": "v1"})
    err = await again.callback("error")
    assert err["error"]["code"] == "invalid_state" and err["state"] == "003001"
    assert len(a1.states.items) == before
    await reach.call(c, "002002", within=RING + LIMIT)
    # busy: the visitor's page answers busy
    raw = await scene.raw("v-raw")
    c = a1.call("callbackToVisitor", {"visitorName": "v-raw"})
    await reach.call(c, "003001")
    await raw.request("answerCall", {"callId": await invited(raw), "answer": "busy"})
    await reach.call(c, "002003")
    # the agent hangs up before an answer
    c = a1.call("callbackToVisitor", {"visitorName": "v1"})
    await reach.call(c, "003001")
    hangup = a1.call("videoDisconnect")
    assert (await hangup.callback("success"))["state"] == "002005"
    await reach.call(c, "002005")
    # accepted, then the agent hangs up: kefuCloseVideoSuccess; videoCloseCB once
    v.on_invite = "accept"
    c = a1.call("callbackToVisitor", {"visitorName": "v1"})
    await reach.call(c, "003001")
    accepted = await reach.call(c, "006011")
    call_id = accepted["payload"]["callId"]
    closes = a1.inner.count(lambda e: e[0] == "videoCloseCB")
    hangup = a1.call("videoDisconnect")
    assert (await hangup.callback("success"))["state"] == "005004"
    await reach.call(c, "005004")
    _, closed = await a1.inner.find(lambda e: e[0] == "videoCloseCB" and e[1]["payload"]["callId"] == call_id)
    assert closed["payload"]["state"] == "005004" and closed["mark"] == "initInnerCallBack"
    # accepted, then the visitor hangs up
    c = a1.call("callbackToVisitor", {"visitorName": "v1"})
    accepted = await reach.call(c, "006011")
    await v.wait_for(CallUpdate, lambda e: e.what == "invited" and e.call_id == accepted["payload"]["callId"])
    await v.settled()
    await v.hangup()
    await reach.call(c, "005003")
    await a1.inner.find(
        lambda e: e[0] == "videoCloseCB" and e[1]["payload"]["callId"] == accepted["payload"]["callId"]
    )
    assert a1.inner.count(lambda e: e[0] == "videoCloseCB") == closes + 2  # once per ended call
    # each call request got exactly one final callback, and nothing after it
    assert c.names == ["inviteSuccess", "acceptSuccess", "visitorDisconnect"]
    reach.done()


async def test_call_current_visitor_codes(scene: Scene) -> None:
    """videoInviteCurrentVisitor (params may be None, SPEC §5): every outcome."""
    reach = Reach("callCurrentVisitor")
    a1 = await scene.agent("a1")
    err = await reach.call(a1.call("videoInviteCurrentVisitor"), "002009")
    assert err["error"]["code"] == "no_such_session"
    v = await scene.visitor("v1", on_invite="refuse")
    sid = (await v.send_message("hello"))["sessionId"]  # queued: a1 takes it by hand
    await a1.call("pickUpSession", {"session_id": sid}).callback("success")
    await v.wait_for(SessionAssigned, lambda e: e.agent_name == "a1")
    c = a1.call("videoInviteCurrentVisitor")
    assert (await reach.call(c, "003002"))["payload"]["callId"]
    await reach.call(c, "002006")
    v.on_invite = "ignore"
    c = a1.call("videoInviteCurrentVisitor")
    await reach.call(c, "003002")
    await reach.call(c, "002007", within=RING + LIMIT)
    c = a1.call("videoInviteCurrentVisitor")
    await reach.call(c, "003002")
    assert (await a1.call("videoDisconnect").callback("success"))["state"] == "002010"
    await reach.call(c, "002010")
    v.on_invite = "accept"
    c = a1.call("videoInviteCurrentVisitor")
    await reach.call(c, "006012")
    assert (await a1.call("videoDisconnect").callback("success"))["state"] == "005006"
    await reach.call(c, "005006")
    c = a1.call("videoInviteCurrentVisitor")
    accepted = await reach.call(c, "006012")
    await v.wait_for(CallUpdate, lambda e: e.what == "invited" and e.call_id == accepted["payload"]["callId"])
    await v.settled()
    await v.hangup()
    await reach.call(c, "005005")
    # a visitor whose page answers busy becomes the current one (a1 takes its session by hand)
    raw = await scene.raw("v-raw")
    sid = (await raw.say("hi"))["payload"]["sessionId"]
    await a1.call("pickUpSession", {"session_id": sid}).callback("success")
    c = a1.call("videoInviteCurrentVisitor")
    await reach.call(c, "003002")
    await raw.request("answerCall", {"callId": await invited(raw), "answer": "busy"})
    await reach.call(c, "002008")
    reach.done()


async def test_visitor_invite_codes(scene: Scene) -> None:
    """The visitor asks for video, the agent rings (004001) and picks up (videoPickUp)."""
    reach = Reach("visitorInvite")
    a1 = await scene.agent("a1", ready=True)
    v = await scene.visitor("v1")
    await v.send_message("hello")
    sid = (await v.wait_for(SessionAssigned, lambda e: e.agent_name == "a1")).session_id
    mark = len(a1.states.items)
    await v.request_video()
    ring = await a1.state("004001", start=mark)  # the ring is a push: no request is open yet
    assert ring["subMark"] == "ringing" and ring["mark"] == "videoPickUp"
    c = a1.call("videoPickUp", {"session_id": sid})
    await reach.call(c, "004001")  # picked up: the meeting is made, the visitor joins by itself
    await reach.call(c, "006013")
    await v.hangup()
    await reach.call(c, "005007")
    await a1.set_ready()
    await v.request_video()
    await a1.state("004001", start=len(a1.states.items) - 1)
    c = a1.call("videoPickUp", {"session_id": sid})
    await reach.call(c, "006013")
    assert (await a1.call("videoDisconnect").callback("success"))["state"] == "005008"
    await reach.call(c, "005008")
    assert c.names == ["success", "visitorJoin", "kefuCloseVideoSuccess"]
    # a page that never joins the meeting: the ring timeout
    await a1.set_ready()
    raw = await scene.raw("v-raw")
    sid = (await raw.say("hi"))["payload"]["sessionId"]
    await raw.event("sessionAssigned")
    assert (await raw.request("requestVideo"))["subMark"] == "success"
    c = a1.call("videoPickUp", {"session_id": sid})
    await reach.call(c, "004001")
    await reach.call(c, "001001", within=RING + LIMIT)
    # the visitor withdraws its request after the pickup, before joining
    call_id = (await raw.request("requestVideo"))["payload"]["callId"]
    c = a1.call("videoPickUp", {"session_id": sid})
    await reach.call(c, "004001")
    await raw.request("hangup", {"callId": call_id})
    err = await reach.call(c, "002011")
    assert err["payload"]["reason"] == "cancelled" or err["payload"]["event"] == "cancel"
    reach.done()


async def test_third_visitor_codes(scene: Scene) -> None:
    """videoInviteVisitor from a two-party call: every outcome; three-party; shrinking; ending."""
    reach = Reach("thirdVisitor")
    a1 = await scene.agent("a1", ready=True)
    await scene.visitor("v1", on_invite="accept")
    first = a1.call("callbackToVisitor", {"visitorName": "v1"})
    await first.callback("acceptSuccess", "006011")
    err = await reach.call(a1.call("videoInviteVisitor", {"visitorName": "nobody"}), "006004")
    assert err["error"]["code"] == "SDK_08"
    v2 = await scene.visitor("v2", on_invite="refuse")
    c = a1.call("videoInviteVisitor", {"visitorName": "v2"})
    await reach.call(c, "007001")
    await reach.call(c, "006001")
    v2.on_invite = "ignore"
    c = a1.call("videoInviteVisitor", {"visitorName": "v2"})
    await reach.call(c, "007001")
    await reach.call(c, "006003", within=RING + LIMIT)
    raw = await scene.raw("v-raw")
    c = a1.call("videoInviteVisitor", {"visitorName": "v-raw"})
    await reach.call(c, "007001")
    await raw.request("answerCall", {"callId": await invited(raw), "answer": "busy"})
    await reach.call(c, "006002")
    v2.on_invite = "accept"
    multi = a1.call("isMultipleVideo")
    assert (await multi.callback("success"))["data"] is False
    c = a1.call("videoInviteVisitor", {"visitorName": "v2"})
    await reach.call(c, "008001")
    assert (await a1.call("isMultipleVideo").callback("success"))["data"] is True
    await v2.wait_for(CallUpdate, lambda e: e.what == "invited")
    await v2.settled()
    await v2.hangup()
    await reach.call(c, "006005")  # the call goes on with v1
    assert (await a1.call("isMultipleVideo").callback("success"))["data"] is False
    c = a1.call("videoInviteVisitor", {"visitorName": "v2"})
    await reach.call(c, "008001")
    assert (await a1.call("videoDisconnect").callback("success"))["state"] == "005001"
    await reach.call(c, "005001")
    # the first call API's request ends with the meeting too (v1204 kefuCloseVideoSuccess)
    assert (await first.callback("kefuCloseVideoSuccess"))["state"] == "005001"
    assert first.names[-1] == "kefuCloseVideoSuccess" and first.names.count("kefuCloseVideoSuccess") == 1
    reach.done()


async def test_third_agent_codes(scene: Scene) -> None:
    """videoInviteAgent and multipleVideoPickUp: two plugins, every outcome on both sides."""
    reach = Reach("thirdAgent")
    a1 = await scene.agent("a1", ready=True)
    # a2's plugin reaches the server through a proxy the test can cut
    await scene.server.add_agent("a2")
    proxy = Proxy(int(scene.server.url.rsplit(":", 1)[1]))
    await proxy.start()
    scene.stack.push_async_callback(proxy.aclose)
    a2 = AgentSide(scene.server, "a2", scene.tmp_path / "plugin-a2", server_url=proxy.url)
    scene.stack.push_async_callback(a2.close)
    await a2.start()
    v1 = await scene.visitor("v1", on_invite="accept")
    first = a1.call("callbackToVisitor", {"visitorName": "v1"})
    await first.callback("acceptSuccess", "006011")
    err = await reach.call(a1.call("videoInviteAgent", {"agentName": "nobody"}), "006009")
    assert err["error"]["code"] == "SDK_08"
    await reach.call(a1.call("videoInviteAgent", {"agentName": "a2"}), "006007")  # a2 is not ready
    await a2.set_ready()
    # a2 refuses
    mark = len(a2.states.items)
    c = a1.call("videoInviteAgent", {"agentName": "a2"})
    await reach.call(c, "007002")
    ring = await reach.push(a2, "004002", start=mark)
    assert ring["mark"] == "multipleVideoPickUp"
    refused = a2.call("multipleVideoRefuse")
    assert (await refused.callback("success"))["state"] == "002000"
    await reach.call(c, "006006")
    # a2 lets it ring out
    mark = len(a2.states.items)
    c = a1.call("videoInviteAgent", {"agentName": "a2"})
    await reach.call(c, "007002")
    await reach.push(a2, "004002", start=mark)
    await reach.call(c, "006008", within=RING + LIMIT)
    await reach.push(a2, "001002", start=mark)
    # a2 joins, then leaves: exitSuccess on both sides
    await a2.set_ready()
    c = a1.call("videoInviteAgent", {"agentName": "a2"})
    await reach.call(c, "007002")
    await a2.state("004002", start=len(a2.states.items) - 1)
    pickup = a2.call("multipleVideoPickUp")
    await reach.call(pickup, "006014")
    await reach.call(c, "008002")
    assert (await a1.call("isMultipleVideo").callback("success"))["data"] is True
    assert (await a2.call("isMultipleVideo").callback("success"))["data"] is True  # 006014, three joined
    left = a2.call("videoDisconnect")
    assert (await left.callback("success"))["state"] == "005010"
    await reach.call(pickup, "005010")
    await reach.call(c, "006010")
    assert (await a2.call("isMultipleVideo").callback("success"))["data"] is False
    # the primary agent hangs up a three-party call: 005002 for it, 005010 for the third agent
    await a2.set_ready()
    c = a1.call("videoInviteAgent", {"agentName": "a2"})
    await reach.call(c, "007002")
    await a2.state("004002", start=len(a2.states.items) - 1)
    pickup = a2.call("multipleVideoPickUp")
    await pickup.callback("acceptSuccess", "006014")
    await reach.call(c, "008002")
    assert (await a1.call("videoDisconnect").callback("success"))["state"] == "005002"
    await reach.call(c, "005002")
    assert (await pickup.callback("kefuCloseVideoSuccess", "005010"))["payload"]["event"] == "agentHangup"
    # the visitor hangs up a call with two agents: 005009 for the third agent
    await a1.set_ready()
    await a2.set_ready()
    first = a1.call("callbackToVisitor", {"visitorName": "v1"})
    await first.callback("acceptSuccess", "006011")
    c = a1.call("videoInviteAgent", {"agentName": "a2"})
    await a2.state("004002", start=len(a2.states.items) - 1)
    pickup = a2.call("multipleVideoPickUp")
    await pickup.callback("acceptSuccess", "006014")
    await reach.call(c, "008002")
    await v1.settled()
    await v1.hangup()
    await reach.call(pickup, "005009")
    assert (await first.callback("visitorDisconnect"))["state"] == "005003"
    assert (await c.callback("kefuCloseVideoSuccess"))["state"] == "005003"  # the call ended
    # the invited agent's link dies while it rings: the invitation fails (006009 / 002012)
    await a1.set_ready()
    await a2.set_ready()
    first = a1.call("callbackToVisitor", {"visitorName": "v1"})
    await first.callback("acceptSuccess", "006011")
    mark = len(a2.states.items)
    c = a1.call("videoInviteAgent", {"agentName": "a2"})
    await reach.call(c, "007002")
    await a2.state("004002", start=mark)
    await proxy.cut()
    err = await reach.call(c, "006009", within=LIMIT)
    assert err["payload"]["reason"] == "agent_disconnected"
    await proxy.restore()  # the plugin comes back and hears what it missed
    await reach.push(a2, "002012", start=mark)
    reach.done()


async def test_close_video_success_is_the_release_notes_name_of_kefu_close_video_success(
    scene: Scene,
) -> None:
    """v1204's release note names the hang-up callback closeVideoSuccess: a page that
    registers only that name hears the agent's hang-up there."""
    from .callkit import ApiCall

    a1 = await scene.agent("a1", ready=True)
    await scene.visitor("v1", on_invite="accept")
    record = ApiCall("callbackToVisitor")
    options = {
        "visitorName": "v1",
        "acceptSuccess": lambda data: record.v1204.add(("acceptSuccess", data)),
        "closeVideoSuccess": lambda data: record.v1204.add(("closeVideoSuccess", data)),
    }
    a1.sdk.callbackToVisitor(options)
    await record.v1204.find(lambda e: e[0] == "acceptSuccess", LIMIT)
    hangup = a1.call("videoDisconnect")
    assert (await hangup.callback("success"))["state"] == "005004"
    _, closed = await record.v1204.find(lambda e: e[0] == "closeVideoSuccess", LIMIT)
    assert closed["subMark"] == "kefuCloseVideoSuccess" and closed["state"] == "005004"
