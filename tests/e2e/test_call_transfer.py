"""Call transfers (issue 20) end to end: server + plugins (aiortc; the primary agent's
plugin is the hub) + ``IMClient`` (both conventions) + a Python visitor, on 127.0.0.1.

Every party's state codes in order (agent A who transfers, agent B the target, the
visitor's ``call`` pushes), and after the transfer the media checked by content: the
visitor's camera reaches B and B's reaches the visitor (each member sends its own
pattern colour), through B's plugin, the call's hub now (D30)."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

import httpx
import pytest
from av import AudioFrame

from kefu.media import MediaPeer, colour_for, sample_rgb
from kefu.media.pattern import tone_for, tone_of
from kefu.plugin.call_media import MemberCall, RelayCall
from kefu.visitor import CallUpdate, MediaStatus, SessionAssigned, Visitor
from tests.plugin.harness import LIMIT

from .callkit import SMALL_MEDIA, AgentSide
from .test_call_media import Scene, call_visitor, hub_of, near, scene

__all__ = ["scene"]  # the fixture, imported from test_call_media

pytestmark = [pytest.mark.media, pytest.mark.server_settings(ring_timeout=5.0, call_grace=1.0)]


def codes(agent: AgentSide, start: int = 0) -> list[str]:
    """The agent's state codes (v190307 ``stateChange``) from ``start`` on, in order."""
    return [s for s, _ in agent.states.items[start:]]


def visitor_whats(v: Visitor, call_id: str) -> list[str]:
    return [e.what for e in v.timeline if isinstance(e, CallUpdate) and e.call_id == call_id]


async def frames_between(agent: AgentSide, v: Visitor, call_id: str) -> None:
    """The visitor's camera reaches ``agent`` (the hub) and the agent's reaches the visitor."""
    hub = hub_of(agent)
    frame = await hub.peer(v.name).next_frame(v.name, "camera", within=LIMIT)
    assert near(sample_rgb(frame), colour_for(v.name))  # type: ignore[arg-type]
    assert v.call is not None and v.call.media is not None and v.call.media.hub == agent.name
    assert v.media is not None
    frame = await v.media.peer.next_frame(agent.name, "camera", within=LIMIT)
    assert near(sample_rgb(frame), colour_for(agent.name))  # type: ignore[arg-type]


async def nothing_reaches(v: Visitor, consulted: MediaPeer) -> None:
    """The held visitor receives no new frame nor audio of either agent (D32), while the
    consulted agent (``consulted``: its connection to the hub) receives a1's all along."""
    assert v.media is not None
    peer = v.media.peer
    assert not [r for r in peer.received if r.label.member == "a2"]

    def counts() -> list[int]:
        return [r.frames for r in peer.received if r.label.member == "a1"]

    for _ in range(3):  # a1 is sending: the frames in flight before the hold are in
        await consulted.next_frame("a1", "camera", within=LIMIT)
    before = counts()
    assert len(before) == 2, peer.received  # a1's camera and microphone tracks stay, held
    for _ in range(10):
        await consulted.next_frame("a1", "camera", within=LIMIT)
    for _ in range(25):
        await consulted.next_frame("a1", "mic", within=LIMIT)
    assert counts() == before


async def hears(v: Visitor, agent: str) -> None:
    """The visitor hears ``agent``'s own tone again."""
    assert v.media is not None
    frames = [await v.media.peer.next_frame(agent, "mic", within=LIMIT) for _ in range(12)]
    hz = tone_of([f for f in frames[2:] if isinstance(f, AudioFrame)])
    assert abs(hz - tone_for(agent)) < 40.0, (agent, hz)


async def record_of(agent: AgentSide, url: str, call_id: str) -> Any:
    token = agent.plugin.api_token
    async with httpx.AsyncClient(base_url=url) as http:
        r = await http.get(f"/api/calls/{call_id}", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200, r.text
    return r.json()


async def test_blind_transfer_moves_the_call_and_its_media_to_the_target(scene: Scene) -> None:
    recording = replace(SMALL_MEDIA, record=True)
    a1 = await scene.agent("a1", media=recording)
    a2 = await scene.agent("a2", media=recording)
    v = await scene.visitor("v1", on_invite="accept")
    call_id, _ = await call_visitor(a1, v)
    await frames_between(a1, v, call_id)
    m1, m2 = len(a1.states.items), len(a2.states.items)
    t = a1.call("transferCall", {"agentName": "a2", "note": "mortgage, salaried"})
    await t.callback("inviteSuccess", "007003")
    # the target rings with the usual invitation, naming who transfers and the note
    ringing = await a2.state("004003", start=m2)
    assert (ringing["flow"], ringing["subMark"], ringing["mark"]) == (
        "transferIn",
        "ringing",
        "multipleVideoPickUp",
    )
    _, invited = await a2.inner.find(lambda e: e[0] == "call" and e[1]["payload"].get("what") == "invited")
    assert invited["payload"]["transfer"] == {
        "kind": "blind",
        "from": "a1",
        "to": "a2",
        "note": "mortgage, salaried",
        "phase": "ringing",
    }
    mark = len(v.timeline)
    await a2.call("multipleVideoPickUp").callback("acceptSuccess", "006023")
    done = await t.callback("transferSuccess", "005011")
    assert done["payload"]["flow"] == "blindTransfer"
    # the visitor is told, its media goes to the new hub (a2's plugin), frames both ways
    await v.wait_for(CallUpdate, lambda e: e.what == "transferred" and e.agent_name == "a2")
    await v.wait_for(
        MediaStatus, lambda e: e.status == "connected" and v.timeline.index(e) >= mark, within=LIMIT
    )
    await frames_between(a2, v, call_id)
    assert a1.plugin.media is not None
    await a1.plugin.media.wait_closed()
    assert a1.plugin.media.calls == {}  # a1's hub is gone
    hub2 = a2.plugin.media.calls[call_id] if a2.plugin.media is not None else None
    assert isinstance(hub2, RelayCall) and hub2.transferred_in and hub2.recorder is not None
    # the hub mode's recording: part 1 is a1's, finished when it left; a2's hub records part 2
    token = a1.plugin.api_token
    async with httpx.AsyncClient(base_url=scene.server.url) as http:
        arts = (
            await http.get(f"/api/calls/{call_id}/media", headers={"Authorization": f"Bearer {token}"})
        ).json()
    (rec,) = [a for a in arts if a["kind"] == "recording" and a["meta"]["part"] == 1]
    assert rec["meta"]["complete"] is True and rec["meta"]["agentName"] == "a1" and rec["size"] > 0
    # the call record shows the transfer
    record = await record_of(a2, scene.server.url, call_id)
    (entry,) = record["transfers"]
    assert {k: entry[k] for k in ("kind", "from", "to", "note", "outcome")} == {
        "kind": "blind",
        "from": "a1",
        "to": "a2",
        "note": "mortgage, salaried",
        "outcome": "completed",
    }
    assert entry["at"]
    members = {m["name"]: m for m in record["members"]}
    assert (members["a1"]["status"], members["a1"]["reason"]) == ("left", "transferred")
    assert (members["a2"]["role"], members["a2"]["status"]) == ("transferTarget", "joined")
    # the visitor hangs up: the call ends for a2, now its primary agent
    await v.hangup()
    await a2.state("005013", start=m2)
    assert codes(a1, m1) == ["007003", "005011"]
    assert codes(a2, m2) == ["004003", "006023", "005013"]
    assert visitor_whats(v, call_id) == ["invited", "transferred"]  # it hung up itself


async def test_consult_transfer_holds_the_visitor_then_completes(scene: Scene) -> None:
    a1 = await scene.agent("a1")
    a2 = await scene.agent("a2")
    v = await scene.visitor("v1", on_invite="accept")
    call_id, _ = await call_visitor(a1, v)
    await frames_between(a1, v, call_id)
    m1, m2 = len(a1.states.items), len(a2.states.items)
    t = a1.call("transferCall", {"agentName": "a2", "mode": "consult", "note": "fraud check"})
    await t.callback("inviteSuccess", "007004")
    await v.wait_for(CallUpdate, lambda e: e.what == "held" and e.agent_name == "a1")
    await a2.state("004003", start=m2)
    await a2.call("multipleVideoPickUp").callback("acceptSuccess", "006023")
    await t.callback("acceptSuccess", "008003")
    # the agents talk: a2 receives a1, not the visitor; the visitor is on hold at the hub
    assert a2.plugin.media is not None
    member_call = a2.plugin.media.calls[call_id]
    assert isinstance(member_call, MemberCall)
    member = await asyncio.wait_for(member_call.wait_member(), LIMIT)
    frame = await member.peer.next_frame("a1", "camera", within=LIMIT)
    assert near(sample_rgb(frame), colour_for("a1"))  # type: ignore[arg-type]
    hub = hub_of(a1)
    assert hub.is_held("v1") and "v1" not in {r.label.member for r in member.peer.received}
    assert not [label for label in hub.peer("a2").sending if label.endswith(".v1")]
    await nothing_reaches(v, member.peer)
    # a1 completes: a2 has the visitor, a1 leaves; the media moves to a2's plugin
    mark = len(v.timeline)
    await a1.call("completeTransfer").callback("completeSuccess", "005012")
    await t.callback("completeSuccess", "005012")
    await a2.state("006024", start=m2)
    await v.wait_for(CallUpdate, lambda e: e.what == "transferred" and e.agent_name == "a2")
    await v.wait_for(
        MediaStatus, lambda e: e.status == "connected" and v.timeline.index(e) >= mark, within=LIMIT
    )
    await frames_between(a2, v, call_id)
    await hears(v, "a2")
    # a2 hangs up
    await a2.call("videoDisconnect").callback("success", "005014")
    await v.wait_for(CallUpdate, lambda e: e.what == "ended")
    assert codes(a1, m1) == ["007004", "008003", "005012"]
    assert codes(a2, m2) == ["004003", "006023", "006024", "005014"]
    assert visitor_whats(v, call_id)[-3:] == ["held", "transferred", "ended"]
    record = await record_of(a2, scene.server.url, call_id)
    assert [(e["kind"], e["outcome"]) for e in record["transfers"]] == [("consult", "completed")]


async def test_consult_cancelled_brings_the_agent_back_to_the_visitor(scene: Scene) -> None:
    a1 = await scene.agent("a1")
    a2 = await scene.agent("a2")
    v = await scene.visitor("v1", on_invite="accept")
    call_id, _ = await call_visitor(a1, v)
    m1, m2 = len(a1.states.items), len(a2.states.items)
    t = a1.call("transferCall", {"agentName": "a2", "mode": "consult"})
    await t.callback("inviteSuccess", "007004")
    await a2.call("multipleVideoPickUp").callback("acceptSuccess", "006023")
    await t.callback("acceptSuccess", "008003")
    assert hub_of(a1).is_held("v1")
    assert a2.plugin.media is not None
    member_call = a2.plugin.media.calls[call_id]
    assert isinstance(member_call, MemberCall)
    await nothing_reaches(v, (await asyncio.wait_for(member_call.wait_member(), LIMIT)).peer)
    await a1.call("cancelTransfer").callback("cancelSuccess", "006022")
    await t.callback("cancelSuccess", "006022")
    await a2.state("002000", start=m2)
    await v.wait_for(CallUpdate, lambda e: e.what == "resumed")
    # off hold: the visitor receives a1 again
    assert a1.plugin.media is not None
    await asyncio.wait_for(a1.plugin.media.calls[call_id].settled(), LIMIT)
    assert not hub_of(a1).is_held("v1")
    await frames_between(a1, v, call_id)
    await hears(v, "a1")
    assert codes(a1, m1) == ["007004", "008003", "006022"]
    assert codes(a2, m2) == ["004003", "006023", "002000"]
    assert visitor_whats(v, call_id)[-2:] == ["held", "resumed"]


async def test_refused_timed_out_and_cancelled_blind_transfers_leave_the_call(scene: Scene) -> None:
    """Signalling only (no media): the target refuses, lets it ring out (the ring timeout,
    5 s here), the agent withdraws it; each time the call stays with a1 (006015 / 006016 /
    006018) and a2 is ready again."""
    a1 = await scene.agent("a1", media=None)
    a2 = await scene.agent("a2", media=None)
    v = await scene.visitor("v1", on_invite="accept", media=None)
    c = a1.call("callbackToVisitor", {"visitorName": "v1"})
    await c.callback("acceptSuccess", "006011")
    call_id = (await c.callback("acceptSuccess"))["payload"]["callId"]
    m1, m2 = len(a1.states.items), len(a2.states.items)
    # refused
    t = a1.call("transferCall", {"agentName": "a2"})
    await t.callback("inviteSuccess", "007003")
    await a2.state("004003", start=m2)
    await a2.call("multipleVideoRefuse").callback("success", "002000")
    await t.callback("refuse", "006015")
    # not answered in time
    t = a1.call("transferCall", {"agentName": "a2"})
    await t.callback("inviteSuccess", "007003")
    await t.callback("timeoutDisconnect", "006016", within=LIMIT + 5.0)
    timed_out = await a2.state("001003", start=m2)
    assert timed_out["subMark"] == "timeoutDisconnect"
    await a2.set_ready()
    # withdrawn by the agent
    t = a1.call("transferCall", {"agentName": "a2", "note": "wrong desk"})
    await t.callback("inviteSuccess", "007003")
    await a1.call("cancelTransfer").callback("cancelSuccess", "006018")
    await t.callback("cancelSuccess", "006018")
    withdrawn = await a2.state("002000", start=len(a2.states.items) - 1)
    assert withdrawn["event"] == "cancel"
    assert codes(a1, m1) == ["007003", "006015", "007003", "006016", "007003", "006018"]
    assert codes(a2, m2) == ["004003", "002000", "004003", "001003", "002000", "004003", "002000"]
    # the visitor was never told: its call stayed with a1 all along
    assert visitor_whats(v, call_id) == ["invited"]
    record = await record_of(a1, scene.server.url, call_id)
    assert [e["outcome"] for e in record["transfers"]] == ["refused", "timeout", "cancelled"]
    assert record["status"] == "connected"
    # the call goes on: a1 hangs up as usual
    await a1.call("videoDisconnect").callback("success", "005004")


async def test_bad_transfers_are_refused_with_their_error_and_change_nothing(scene: Scene) -> None:
    a1 = await scene.agent("a1", media=None)
    a2 = await scene.agent("a2", media=None)
    await scene.agent("a3", media=None, ready=False)  # logged in, not ready
    await scene.server.add_agent("a4")  # exists, never logged in
    await scene.visitor("v1", on_invite="accept", media=None)

    async def refused(api: str, params: dict[str, Any] | None, code: str, agent: AgentSide = a1) -> None:
        err = await agent.call(api, params).callback("error")
        assert err["error"]["code"] == code, err

    await refused("transferCall", {"agentName": "a2"}, "not_in_call")  # no call
    c = a1.call("callbackToVisitor", {"visitorName": "v1"})
    await c.callback("acceptSuccess", "006011")
    m1 = len(a1.states.items)
    await refused("transferCall", {}, "invalid_field")  # no target
    await refused("transferCall", {"agentName": "a2", "teamName": "t"}, "invalid_field")  # two targets
    await refused("transferCall", {"agentName": "a2", "mode": "warm"}, "invalid_field")
    await refused("transferCall", {"agentName": "a1"}, "invalid_field")  # itself
    await refused("transferCall", {"agentName": "nobody"}, "no_such_agent")
    await refused("transferCall", {"teamName": "nobody"}, "no_such_agent")
    await refused("transferCall", {"agentName": "a4"}, "agent_offline")
    await refused("transferCall", {"agentName": "a3"}, "agent_busy")
    await refused("completeTransfer", None, "no_transfer")
    await refused("cancelTransfer", None, "no_transfer")
    await refused("cancelTransfer", None, "no_transfer", agent=a2)  # not in a call at all
    # one transfer at a time; a blind one is not completed
    t = a1.call("transferCall", {"agentName": "a2"})
    await t.callback("inviteSuccess", "007003")
    await refused("transferCall", {"agentName": "a3"}, "transfer_in_progress")
    await refused("completeTransfer", None, "invalid_state")
    await a2.call("multipleVideoRefuse").callback("success", "002000")
    await t.callback("refuse", "006015")
    assert codes(a1, m1) == ["007003", "006015"]  # only the one transfer moved a1
    await a1.call("videoDisconnect").callback("success", "005004")


async def test_a_transfer_to_a_team_rings_its_ready_agent(scene: Scene) -> None:
    """To a team (its queue): the ready, connected agent routing would pick rings; none ready
    → a consult is refused with no_agent_available and the call stays (D31, D50)."""
    from kefu.server.teams import add_team, assign

    sv = scene.server.services
    await add_team(sv.store, "loans", now=scene.server.settings.now())
    a1 = await scene.agent("a1", media=None)
    a2 = await scene.agent("a2", media=None, ready=False)
    a3 = await scene.agent("a3", media=None)
    for name in ("a1", "a2"):
        await assign(sv.store, "loans", name)
    v = await scene.visitor("v1", on_invite="accept", media=None)
    c = a1.call("callbackToVisitor", {"visitorName": "v1"})
    await c.callback("acceptSuccess", "006011")
    # a1 itself does not count, a2 is not ready, a3 is not in the team
    err = await a1.call("transferCall", {"teamName": "loans", "mode": "consult"}).callback("error")
    assert err["error"]["code"] == "no_agent_available"
    await a2.set_ready()
    m2 = len(a2.states.items)
    t = a1.call("transferCall", {"teamName": "loans", "note": "team transfer"})
    await t.callback("inviteSuccess", "007003")
    await a2.state("004003", start=m2)
    await a2.call("multipleVideoPickUp").callback("acceptSuccess", "006023")
    await t.callback("transferSuccess", "005011")
    assert not [s for s, _ in a3.states.items if s == "004003"]
    await v.hangup()
    await a2.state("005013", start=m2)


async def test_the_chat_session_follows_a_transferred_call(scene: Scene) -> None:
    """The visitor's session with a1, whose call a1 transfers to a2: once a2 has the call it has
    the chat too (``callTransferred``, with the note), a1 has it no longer."""
    a1 = await scene.agent("a1", media=None)
    a2 = await scene.agent("a2", media=None, ready=False)  # routing gives the chat to a1
    v = await scene.visitor("v1", on_invite="accept", media=None)
    await v.send_message("my card is blocked")
    assigned = await v.wait_for(SessionAssigned, lambda e: e.agent_name == "a1")
    await a2.set_ready()
    await a1.call("videoInviteCurrentVisitor").callback("acceptSuccess", "006012")
    t = a1.call("transferCall", {"agentName": "a2", "note": "card team"})
    await t.callback("inviteSuccess", "007003")
    await a2.call("multipleVideoPickUp").callback("acceptSuccess", "006023")
    await t.callback("transferSuccess", "005011")
    theirs = (await a2.call("sessionState").callback("success"))["payload"]["sessions"]
    (session,) = [s for s in theirs if s["sessionId"] == assigned.session_id]
    assert session["transfer"] == {"from": "a1", "reason": "callTransferred", "note": "card team"}
    mine = (await a1.call("sessionState").callback("success"))["payload"]["sessions"]
    assert assigned.session_id not in [s["sessionId"] for s in mine]


async def test_the_async_client_transfers_a_call(scene: Scene) -> None:
    """``kefu.sdk.Client``'s snake_case coroutines: transfer_call, cancel_transfer,
    complete_transfer (their first reply; errors raised as ApiError)."""
    from kefu.protocol import ApiError
    from kefu.sdk import Client

    a1 = await scene.agent("a1", media=None)
    a2 = await scene.agent("a2", media=None)
    await scene.visitor("v1", on_invite="accept", media=None)
    await a1.call("callbackToVisitor", {"visitorName": "v1"}).callback("acceptSuccess", "006011")
    await a1.sdk.aclose()  # one SDK controls a plugin at a time: the async client takes over
    async with Client(a1.plugin.url, data_dir=a1.plugin.settings.data_dir) as client:
        with pytest.raises(ApiError) as e:
            await client.complete_transfer()
        assert e.value.code.value == "no_transfer"
        asked = await client.transfer_call("a2", mode="consult", note="a second opinion")
        assert (asked.sub_mark, asked.state) == ("inviteSuccess", "007004")
        await a2.call("multipleVideoPickUp").callback("acceptSuccess", "006023")
        cancelled = await client.cancel_transfer()
        assert (cancelled.sub_mark, cancelled.state) == ("cancelSuccess", "006022")
        with pytest.raises(ApiError) as e:
            await client.transfer_call(team_name="nobody")
        assert e.value.code.value == "no_such_agent"


async def test_a_monitoring_supervisor_follows_the_transferred_call(scene: Scene) -> None:
    """Issue 20's two parts together: a supervisor monitors a1's call (through a1's hub); a1
    transfers it blind to a3; the supervisor's media follows to a3's hub (D30) and still
    receives the visitor, and a3 now."""
    from kefu.plugin.supervising import SupervisorCall
    from kefu.server.teams import add_team, assign, set_supervisor

    a1 = await scene.agent("a1")
    a3 = await scene.agent("a3")
    boss = await scene.agent("boss", ready=False)
    sv = scene.server.services
    await set_supervisor(sv.store, "boss")
    await add_team(sv.store, "t1", now=scene.server.settings.now())
    for name in ("a1", "a3", "boss"):
        await assign(sv.store, "t1", name)
    v = await scene.visitor("v1", on_invite="accept")
    call_id, _ = await call_visitor(a1, v)
    await boss.call("monitorCall", {"agentName": "a1"}).callback("success")
    assert boss.plugin.media is not None
    first = boss.plugin.media.calls[call_id]
    assert isinstance(first, SupervisorCall) and first.primary == "a1"
    await first.member.peer.next_frame("v1", "camera", within=LIMIT)
    t = a1.call("transferCall", {"agentName": "a3"})
    await t.callback("inviteSuccess", "007003")
    await a3.call("multipleVideoPickUp").callback("acceptSuccess", "006023")
    await t.callback("transferSuccess", "005011")

    async def new_hub() -> SupervisorCall:
        while True:
            got = boss.plugin.media.calls.get(call_id) if boss.plugin.media is not None else None
            if isinstance(got, SupervisorCall) and got.primary == "a3":
                return got
            await boss.inner.find(lambda e: e[0] == "call", start=len(boss.inner.items))

    again = await asyncio.wait_for(new_hub(), LIMIT)
    for member in ("v1", "a3"):
        frame = await again.member.peer.next_frame(member, "camera", within=LIMIT)
        assert near(sample_rgb(frame), colour_for(member)), member  # type: ignore[arg-type]


async def test_a_blind_transfer_to_a_queue_waits_for_the_teams_first_ready_agent(scene: Scene) -> None:
    """D50: no agent of the team ready: the agent leaves (005015), the visitor waits with no
    media, told its place; the team's agent who becomes ready rings, picks up and is the hub."""
    from kefu.server.teams import add_team, assign

    sv = scene.server.services
    await add_team(sv.store, "loans", now=scene.server.settings.now())
    a1 = await scene.agent("a1")
    a2 = await scene.agent("a2", ready=False)
    for name in ("a1", "a2"):
        await assign(sv.store, "loans", name)
    v = await scene.visitor("v1", on_invite="accept")
    call_id, _ = await call_visitor(a1, v)
    await frames_between(a1, v, call_id)
    m1, m2 = len(a1.states.items), len(a2.states.items)
    t = a1.call("transferCall", {"teamName": "loans", "note": "card blocked"})
    await t.callback("queued", "005015")
    assert t.names == ["queued"]  # the request's last word
    queued = await v.wait_for(CallUpdate, lambda e: e.what == "queued", within=LIMIT)
    assert queued.position == 1
    # the visitor waits with no media: the old hub closed with a1's leaving
    assert a1.plugin.media is not None
    await a1.plugin.media.wait_closed()
    assert a1.plugin.media.calls == {} and v.call is not None and v.call.media is None
    record = await record_of(a1, scene.server.url, call_id)
    assert record["status"] == "connected" and record["transfers"] == []
    # a2 becomes ready: the waiting call rings it as a transferred call
    mark = len(v.timeline)
    await a2.set_ready()
    ringing = await a2.state("004003", start=m2)
    assert ringing["flow"] == "transferIn"
    await a2.call("multipleVideoPickUp").callback("acceptSuccess", "006023")
    await v.wait_for(CallUpdate, lambda e: e.what == "transferred" and e.agent_name == "a2", within=LIMIT)
    await v.wait_for(
        MediaStatus, lambda e: e.status == "connected" and v.timeline.index(e) >= mark, within=LIMIT
    )
    await frames_between(a2, v, call_id)
    await a2.call("videoDisconnect").callback("success", "005014")
    await v.wait_for(CallUpdate, lambda e: e.what == "ended", within=LIMIT)
    assert codes(a1, m1) == ["005015"]
    assert codes(a2, m2) == ["002000", "004003", "006023", "005014"]
    assert visitor_whats(v, call_id) == ["invited", "queued", "transferred", "ended"]
    record = await record_of(a2, scene.server.url, call_id)
    (entry,) = record["transfers"]
    assert (entry["kind"], entry["from"], entry["to"], entry["team"], entry["outcome"]) == (
        "blind",
        "a1",
        "a2",
        "loans",
        "completed",
    )


async def test_calls_wait_in_the_queue_in_order_and_a_visitor_may_hang_up_waiting(scene: Scene) -> None:
    """Signalling only: two calls wait (places 1 and 2); the first visitor hangs up waiting
    (the call ends, its transfer ``abandoned``); the second rings the agent that becomes
    ready, who refuses: it waits again and rings the next agent, not the same one."""
    from kefu.server.teams import add_team, assign

    sv = scene.server.services
    await add_team(sv.store, "loans", now=scene.server.settings.now())
    a1 = await scene.agent("a1", media=None)
    a3 = await scene.agent("a3", media=None)
    a2 = await scene.agent("a2", media=None, ready=False)
    a4 = await scene.agent("a4", media=None, ready=False)
    for name in ("a2", "a4"):
        await assign(sv.store, "loans", name)
    v1 = await scene.visitor("v1", on_invite="accept", media=None)
    v2 = await scene.visitor("v2", on_invite="accept", media=None)
    ids = []
    for agent, v in ((a1, v1), (a3, v2)):
        c = agent.call("callbackToVisitor", {"visitorName": v.name})
        ids.append((await c.callback("acceptSuccess", "006011"))["payload"]["callId"])
        await agent.call("transferCall", {"teamName": "loans"}).callback("queued", "005015")
        update = await v.wait_for(CallUpdate, lambda e: e.what == "queued", within=LIMIT)
        assert update.position == len(ids)
    # v1 hangs up while it waits: the call ends, the record says so
    await v1.hangup()  # answered once the call's operation committed
    record = await record_of(a1, scene.server.url, ids[0])
    assert record["status"] == "ended" and record["endedBy"] == "v1", record
    assert [e["outcome"] for e in record["transfers"]] == ["abandoned"]
    moved = await v2.wait_for(CallUpdate, lambda e: e.what == "queued" and e.position == 1, within=LIMIT)
    assert moved.call_id == ids[1]  # v2 moved up to the head of the queue
    # a2 ready: v2's call rings it (v1's is gone); a2 refuses; a4 ready gets it
    m2, m4 = len(a2.states.items), len(a4.states.items)
    await a2.set_ready()
    await a2.state("004003", start=m2)
    await a2.call("multipleVideoRefuse").callback("success", "002000")
    await a4.set_ready()
    await a4.state("004003", start=m4)
    await a4.call("multipleVideoPickUp").callback("acceptSuccess", "006023")
    await v2.wait_for(CallUpdate, lambda e: e.what == "transferred" and e.agent_name == "a4", within=LIMIT)
    assert codes(a2, m2) == ["002000", "004003", "002000"]
    await v2.hangup()
    await a4.state("005013", start=m4)
