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
from tests.plugin.harness import LIMIT
from tests.plugin.harness import Visitor as RawVisitor

from .callkit import CODE_TABLE, AgentSide, Reach

RING = 1.0  # seconds an invitation rings here
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
    assert err["error"] == {"code": "SDK_08", "msg": "id lookup failed; check the visitor's details"}
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
