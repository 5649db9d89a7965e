"""A supervisor in a call through Janus (SFU mode, issue 20): it subscribes to every
member's feed; it publishes nothing in monitor, and its microphone in whisper (only the
agent subscribes to it) and barge (everyone does). Checked by content: colours and tones
(``kefu.media.colour_for``, ``tone_for``); everything in the ``dc`` network namespace."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path

import pytest
from av import AudioFrame

from kefu.media import SfuMember, TrackAdded, colour_for, sample_rgb
from kefu.media.pattern import tone_for, tone_of
from kefu.plugin.media import SfuCall
from kefu.server.sfu_relay import SfuRelay
from kefu.server.teams import add_team, assign, set_supervisor
from kefu.visitor import CallUpdate, MediaStatus
from tests.e2e.callkit import AgentSide
from tests.e2e.test_call_media import near
from tests.media.conftest import Events
from tests.plugin.harness import LIMIT

from .conftest import DataCentre
from .test_calls_sfu import MEDIA, Scene, frame_of, sfu_of

pytestmark = pytest.mark.media

AGENT, VISITOR, BOSS = "a1", "v1", "boss"
A, V, S = ("agent", AGENT), ("visitor", VISITOR), ("agent", BOSS)


@pytest.fixture
async def scene(dc: DataCentre, tmp_path: Path) -> AsyncIterator[Scene]:
    async with AsyncExitStack() as stack:
        yield Scene(dc, tmp_path, stack)


async def pitch_of(member: SfuMember, name: str) -> float:
    """The pitch of ``name``'s audio as ``member`` receives it (its subscription made first)."""
    if name not in member.members:
        events = Events()
        member.events.subscribe(events)
        await events.wait_for(lambda e: isinstance(e, TrackAdded) and e.member == name, LIMIT)
    sub = member.subscription(name)
    frames = [await sub.next_frame(name, "mic", within=LIMIT) for _ in range(12)]
    return tone_of([f for f in frames[2:] if isinstance(f, AudioFrame)])


def is_tone(hz: float, name: str) -> bool:
    return abs(hz - tone_for(name)) < 40.0


async def ok(side: AgentSide, api: str, params: dict[str, str] | None = None) -> dict[str, object]:
    return (await side.call(api, params).callback("success"))["payload"]  # type: ignore[no-any-return]


async def test_monitor_whisper_barge_through_janus(scene: Scene) -> None:
    a1 = await scene.agent(AGENT)
    await scene.server.add_agent(BOSS)
    sv = scene.server.services
    await set_supervisor(sv.store, BOSS)
    await add_team(sv.store, "t1", now=scene.server.settings.now())
    for name in (AGENT, BOSS):
        await assign(sv.store, "t1", name)
    boss = AgentSide(scene.server, BOSS, scene.tmp_path / "plugin-boss", media=MEDIA)
    scene.stack.push_async_callback(boss.close)
    await boss.start()
    v = await scene.visitor(VISITOR)
    accepted = await a1.call("callbackToVisitor", {"visitorName": VISITOR}).callback(
        "acceptSuccess", "006011"
    )
    call_id = str(accepted["payload"]["callId"])
    await v.wait_for(MediaStatus, lambda e: e.status == "connected", within=LIMIT)
    agent = sfu_of(a1)
    assert isinstance(v.media, SfuMember)
    relay = sv.calls.sfu.relay  # type: ignore[union-attr]
    assert isinstance(relay, SfuRelay)

    # monitor: the supervisor subscribes to both members; it publishes nothing
    await ok(boss, "monitorCall", {"callId": call_id})
    assert boss.plugin.media is not None
    mine = boss.plugin.media.calls[call_id]
    assert isinstance(mine, SfuCall)
    me = mine.member
    for name in (AGENT, VISITOR):
        assert near(sample_rgb(await frame_of(me, name)), colour_for(name)), name  # type: ignore[arg-type]
        assert is_tone(await pitch_of(me, name), name), name
    await relay.settled()
    media = relay._calls[call_id]
    assert S not in media.publishers and not any(feed == S for _, feed in media.subs)

    # whisper: its microphone is published; only the agent subscribes to it
    await ok(boss, "whisper")
    assert is_tone(await pitch_of(agent, BOSS), BOSS)
    await relay.settled()
    assert (A, S) in media.subs and (V, S) not in media.subs
    assert BOSS not in v.media.members

    # barge: the visitor subscribes too, and is told of a member joining
    await ok(boss, "barge")
    await v.wait_for(CallUpdate, lambda e: e.what == "memberJoined" and e.name == BOSS, within=LIMIT)
    assert is_tone(await pitch_of(v.media, BOSS), BOSS)
    assert is_tone(await pitch_of(agent, BOSS), BOSS)

    # back to monitor: nobody subscribes to it any more
    await ok(boss, "monitorCall", {"callId": call_id})
    await v.wait_for(CallUpdate, lambda e: e.what == "memberLeft" and e.name == BOSS, within=LIMIT)
    await relay.settled()
    assert not any(feed == S for _, feed in media.subs)
    assert me.publisher.sending == ()

    # leave: its handles go; the call goes on
    await ok(boss, "leaveMonitor")
    await boss.plugin.media.wait_closed()
    assert call_id not in boss.plugin.media.calls
    await relay.settled()
    assert S not in media.members and not any(S in key for key in media.subs)
    await a1.call("videoDisconnect").callback("success", "005004")
