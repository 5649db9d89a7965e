"""A supervisor in a real media call, hub mode (issue 20): monitor, whisper, barge, leave.

Server + plugins (aiortc; the primary agent's plugin is the hub, the
supervisor's plugin a member of it) + ``IMClient`` + a Python visitor, on
127.0.0.1. Every member sends its own pattern colour and its own tone
(``kefu.media.colour_for``, ``tone_for``): who receives whom is checked by
content — the colour of the frames, the pitch of the audio."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest
from av import AudioFrame

from kefu.media import MediaPeer, colour_for, sample_rgb, track_label
from kefu.media.pattern import tone_for, tone_of
from kefu.plugin.supervising import SupervisorCall
from kefu.server.teams import add_team, assign, set_supervisor
from kefu.visitor import CallUpdate, Visitor
from tests.conftest import ServerHandle
from tests.plugin.harness import LIMIT
from tests.server.test_rest import api

from .callkit import AgentSide, Log
from .test_call_media import Scene, call_visitor, hub_of, near

pytestmark = [pytest.mark.media, pytest.mark.server_settings(ring_timeout=5.0, call_grace=1.0)]

# names with distinct colours and tones (the same index: sum of the name's bytes mod 6)
AGENT, VISITOR, BOSS = "a1", "v1", "boss"
assert len({tone_for(n) for n in (AGENT, VISITOR, BOSS)}) == 3


async def heard(peer: MediaPeer, member: str) -> float:
    """The pitch of ``member``'s audio as ``peer`` receives it (a quarter of a second)."""
    frames = [await peer.next_frame(member, "mic", within=LIMIT) for _ in range(12)]
    return tone_of([f for f in frames[2:] if isinstance(f, AudioFrame)])


def receives(peer: MediaPeer, member: str) -> bool:
    return any(r.label.member == member for r in peer.received)


def pitch(hz: float, member: str) -> bool:
    return abs(hz - tone_for(member)) < 40.0


@pytest.fixture
async def scene(server: ServerHandle, tmp_path: Path) -> AsyncIterator[Scene]:
    async with AsyncExitStack() as stack:
        yield Scene(server, tmp_path, stack)


async def floor(scene: Scene) -> dict[str, AgentSide]:
    """a1 and its supervisor boss (team t1), with media; a2 (an agent) and other (the
    supervisor of team t2) without."""
    sides = {AGENT: await scene.agent(AGENT), BOSS: await scene.agent(BOSS, ready=False)}
    for name in ("a2", "other"):
        sides[name] = await scene.agent(name, ready=False, media=None)
    sv = scene.server.services
    for name in (BOSS, "other"):
        await set_supervisor(sv.store, name)
    now = scene.server.settings.now()
    await add_team(sv.store, "t1", now=now)
    await add_team(sv.store, "t2", now=now)
    for team, name in (("t1", AGENT), ("t1", BOSS), ("t2", "other")):
        await assign(sv.store, team, name)
    return sides


async def ok(who: AgentSide, api_: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
    return (await who.call(api_, params).callback("success"))["payload"]  # type: ignore[no-any-return]


async def error(who: AgentSide, api_: str, params: dict[str, Any] | None = None) -> str:
    return str((await who.call(api_, params).callback("error"))["error"]["code"])


def presence(agent: AgentSide) -> Log[dict[str, Any]]:
    """The agent's ``initInnerCallBack`` ``supervisorChange`` payloads."""
    log: Log[dict[str, Any]] = Log()
    agent.sdk.initInnerCallBack({"supervisorChange": lambda data: log.add(data["payload"])})
    return log


async def in_a_call(scene: Scene) -> tuple[AgentSide, AgentSide, Log[dict[str, Any]], Visitor, str]:
    """The floor, a1 in a call with v1: the agent, the supervisor, what the agent is told of
    supervisors, the visitor, the call's id."""
    sides = await floor(scene)
    a1, boss = sides[AGENT], sides[BOSS]
    told = presence(a1)
    v = await scene.visitor(VISITOR, on_invite="accept")
    call_id, _ = await call_visitor(a1, v)
    return a1, boss, told, v, call_id


async def test_monitor_whisper_barge_leave_checked_by_content(scene: Scene) -> None:
    a1, boss, told, v, call_id = await in_a_call(scene)
    hub = hub_of(a1)
    assert v.media is not None

    # monitor: the supervisor receives everyone's video and audio; nobody receives its
    got = await ok(boss, "monitorCall", {"agentName": AGENT})
    assert got["callId"] == call_id and got["mode"] == "monitor"
    assert got["supervisors"] == [{"name": BOSS, "mode": "monitor"}]
    await told.find(lambda p: p["supervisor"] == BOSS and p["mode"] == "monitor" and p["old"] is None)
    assert boss.plugin.media is not None
    mine = boss.plugin.media.calls[call_id]
    assert isinstance(mine, SupervisorCall)
    me = mine.member.peer
    for member in (AGENT, VISITOR):
        frame = await me.next_frame(member, "camera", within=LIMIT)
        assert near(sample_rgb(frame), colour_for(member)), member  # type: ignore[arg-type]
        assert pitch(await heard(me, member), member), member
    assert not receives(hub.peer(BOSS), BOSS) and not receives(v.media.peer, BOSS)
    assert me.sending == ()  # its microphone does not leave its machine

    # whisper: the agent hears the supervisor, the visitor does not
    assert (await ok(boss, "whisper"))["mode"] == "whisper"
    await told.find(lambda p: p["mode"] == "whisper" and p["old"] == "monitor")
    assert pitch(await heard(hub.peer(BOSS), BOSS), BOSS)
    await asyncio.wait_for(a1.plugin.media.calls[call_id].settled(), LIMIT)  # type: ignore[union-attr]
    assert track_label(BOSS, "mic") not in hub.peer(VISITOR).sending
    assert not receives(v.media.peer, BOSS)
    assert pitch(await heard(v.media.peer, AGENT), AGENT)  # the visitor still hears the agent

    # barge: everyone hears the supervisor; the visitor is told of a member joining
    assert (await ok(boss, "barge"))["mode"] == "barge"
    update = await v.wait_for(CallUpdate, lambda e: e.what == "memberJoined" and e.name == BOSS, within=LIMIT)
    assert update.kind == "agent"
    assert pitch(await heard(v.media.peer, BOSS), BOSS)
    assert pitch(await heard(hub.peer(BOSS), BOSS), BOSS)
    # the supervisor still receives both
    assert pitch(await heard(me, VISITOR), VISITOR) and pitch(await heard(me, AGENT), AGENT)

    # back to monitor (monitorCall again, no re-join): the visitor is told it left, and its
    # audio reaches nobody
    assert (await ok(boss, "monitorCall", {"callId": call_id}))["mode"] == "monitor"
    await v.wait_for(CallUpdate, lambda e: e.what == "memberLeft" and e.name == BOSS, within=LIMIT)
    await asyncio.wait_for(mine.settled(), LIMIT)
    assert me.sending == ()
    assert not any(t.startswith(BOSS) for t in hub.peer(VISITOR).sending)
    assert mine is boss.plugin.media.calls[call_id] and not me.closed  # the same connection

    # leave: the agent is told; the hub closes the supervisor's connection
    assert (await ok(boss, "leaveMonitor"))["mode"] is None
    await told.find(lambda p: p["mode"] is None and p["old"] == "monitor")
    await boss.plugin.media.wait_closed()
    assert call_id not in boss.plugin.media.calls and me.closed
    await asyncio.wait_for(a1.plugin.media.calls[call_id].settled(), LIMIT)  # type: ignore[union-attr]
    assert hub.members == (VISITOR,)

    # the call record: who, which mode, when
    async with api(scene.server, await scene.server.login(BOSS)) as http:
        record = (await http.get(f"/api/calls/{call_id}")).json()
    steps = [(s["supervisor"], s["mode"], s["old"]) for s in record["supervision"]]
    assert steps == [
        (BOSS, "monitor", None),
        (BOSS, "whisper", "monitor"),
        (BOSS, "barge", "whisper"),
        (BOSS, "monitor", "barge"),
        (BOSS, None, "monitor"),
    ]
    ats = [s["at"] for s in record["supervision"]]
    assert ats == sorted(ats)
    await a1.call("videoDisconnect").callback("success", "005004")


async def test_bad_requests_and_the_call_ending(scene: Scene) -> None:
    sides = await floor(scene)
    a1, boss, a2, other = sides[AGENT], sides[BOSS], sides["a2"], sides["other"]
    told = presence(a1)
    # no call yet
    assert await error(boss, "monitorCall", {"agentName": AGENT}) == "not_in_call"
    assert await error(boss, "whisper") == "not_in_call"
    v = await scene.visitor(VISITOR, on_invite="accept")
    call_id, _ = await call_visitor(a1, v)
    # not a supervisor; another team's supervisor; the call's own agent
    assert await error(a2, "monitorCall", {"callId": call_id}) == "forbidden"
    assert await error(other, "monitorCall", {"callId": call_id}) == "no_such_call"
    assert await error(other, "monitorCall", {"agentName": AGENT}) == "no_such_agent"
    assert await error(a1, "monitorCall", {"callId": call_id}) == "forbidden"
    # bad input: no such call, both or neither of callId and agentName
    assert await error(boss, "monitorCall", {"callId": "nope"}) == "no_such_call"
    assert await error(boss, "monitorCall", {}) == "invalid_field"
    assert await error(boss, "monitorCall", {"callId": call_id, "agentName": AGENT}) == "invalid_field"
    assert await error(boss, "leaveMonitor") == "not_in_call"
    # already monitoring
    await ok(boss, "monitorCall", {"callId": call_id})
    assert await error(boss, "monitorCall", {"callId": call_id}) == "invalid_state"
    # the floor shows where the supervisor helps
    async with api(scene.server, await scene.server.login(BOSS)) as http:
        rows = (await http.get("/api/floor")).json()["agents"]
    assert next(a for a in rows if a["name"] == BOSS)["supervising"] == [
        {"callId": call_id, "mode": "monitor"}
    ]
    # the call ends: the supervisor's part ends with it, its media closes
    await a1.call("videoDisconnect").callback("success", "005004")
    await told.find(lambda p: p["mode"] == "monitor")
    assert boss.plugin.media is not None
    await boss.plugin.media.wait_closed()
    assert call_id not in boss.plugin.media.calls
    assert await error(boss, "whisper") == "not_in_call"
    assert await error(boss, "monitorCall", {"callId": call_id}) == "no_such_call"
    async with api(scene.server, await scene.server.login(BOSS)) as http:
        record = (await http.get(f"/api/calls/{call_id}")).json()
    last = record["supervision"][-1]
    assert (last["mode"], last["old"], last["reason"]) == (None, "monitor", "hangup")
    # integrators get the join and the leave
    await scene.server.add_agent("root", admin=True)
    async with api(scene.server, await scene.server.login("root")) as http:
        events = (await http.get("/api/events", params={"limit": 1000})).json()["events"]
    mine = [e["data"] for e in events if e["type"] == "call.supervisor"]
    assert [(d["callId"], d["supervisor"], d["mode"], d["old"]) for d in mine] == [
        (call_id, BOSS, "monitor", None),
        (call_id, BOSS, None, "monitor"),
    ]


async def test_a_supervisor_whose_plugin_is_gone_leaves_after_the_grace(scene: Scene) -> None:
    a1, boss, told, v, call_id = await in_a_call(scene)
    await ok(boss, "monitorCall", {"callId": call_id})
    await ok(boss, "barge")
    await v.wait_for(CallUpdate, lambda e: e.what == "memberJoined" and e.name == BOSS, within=LIMIT)
    await boss.close()  # its plugin stops: its link closes; call_grace is 1 s here
    left = await told.find(lambda p: p["mode"] is None)
    assert (left["old"], left["reason"]) == ("barge", "agent_disconnected")
    await v.wait_for(CallUpdate, lambda e: e.what == "memberLeft" and e.name == BOSS, within=LIMIT)
    await asyncio.wait_for(a1.plugin.media.calls[call_id].settled(), LIMIT)  # type: ignore[union-attr]
    assert hub_of(a1).members == (VISITOR,)  # the hub closed the supervisor's connection
    await a1.call("videoDisconnect").callback("success", "005004")  # the call went on until now
