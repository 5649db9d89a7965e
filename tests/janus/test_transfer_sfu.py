"""A blind call transfer in the SFU mode (issue 20): the same transfer engine as the hub
mode; the media server stays, the target publishes and subscribes, the transferring
agent's feed goes (docs/calls.md, "Transfers"). Checked by colour both ways."""

from __future__ import annotations

from typing import Any

import pytest

from kefu.media import SfuMember, TrackRemoved, colour_for, sample_rgb
from kefu.plugin.media import SfuCall
from kefu.server.sfu_relay import SfuRelay
from kefu.visitor import CallUpdate
from tests.e2e.test_call_media import near
from tests.media.conftest import Events
from tests.plugin.harness import LIMIT

from .test_calls_sfu import Scene, frame_of, scene, sfu_of
from .test_supervise_sfu import is_tone, pitch_of

__all__ = ["scene"]  # the fixture, imported from test_calls_sfu

pytestmark = pytest.mark.media


async def test_a_blind_transfer_through_janus_moves_the_call_to_the_target(scene: Scene) -> None:
    a1 = await scene.agent("a1")
    a2 = await scene.agent("a2")
    v = await scene.visitor("v1")
    c = a1.call("callbackToVisitor", {"visitorName": "v1"})
    call_id = (await c.callback("acceptSuccess", "006011"))["payload"]["callId"]
    await frame_of(sfu_of(a1), "v1")
    m1, m2 = len(a1.states.items), len(a2.states.items)
    t = a1.call("transferCall", {"agentName": "a2", "note": "sfu"})
    await t.callback("inviteSuccess", "007003")
    await a2.call("multipleVideoPickUp").callback("acceptSuccess", "006023")
    await t.callback("transferSuccess", "005011")
    assert a2.plugin.media is not None
    media = a2.plugin.media.calls[call_id]
    assert isinstance(media, SfuCall) and media.primary  # the call's primary agent now
    assert isinstance(v.media, SfuMember)  # the visitor's connections to Janus stay
    frame = await frame_of(sfu_of(a2), "v1")
    assert near(sample_rgb(frame), colour_for("v1"))
    frame = await frame_of(v.media, "a2")
    assert near(sample_rgb(frame), colour_for("a2"))
    assert a1.plugin.media is not None
    await a1.plugin.media.wait_closed()
    assert a1.plugin.media.calls == {}
    await a2.call("videoDisconnect").callback("success", "005014")
    assert [s for s, _ in a1.states.items[m1:]] == ["007003", "005011"]
    assert [s for s, _ in a2.states.items[m2:]] == ["004003", "006023", "005014"]


A1, A2, V1 = ("agent", "a1"), ("agent", "a2"), ("visitor", "v1")


async def test_a_consult_through_janus_holds_the_visitor_by_its_subscriptions(scene: Scene) -> None:
    """D32 in the SFU mode: while a consult holds the visitor it subscribes to no feed
    and the consulted agent not to the visitor's; cancelled, the visitor gets a1 back;
    completed, a2. Checked by colour and tone, and by the relay's subscriptions."""
    a1 = await scene.agent("a1")
    a2 = await scene.agent("a2")
    v = await scene.visitor("v1")
    c = a1.call("callbackToVisitor", {"visitorName": "v1"})
    call_id = (await c.callback("acceptSuccess", "006011"))["payload"]["callId"]
    assert isinstance(v.media, SfuMember)
    assert near(sample_rgb(await frame_of(v.media, "a1")), colour_for("a1"))
    relay = scene.server.services.calls.sfu.relay  # type: ignore[union-attr]
    assert isinstance(relay, SfuRelay)
    m2 = len(a2.states.items)

    async def consult() -> Any:
        removed = Events()
        v.media.events.subscribe(removed)  # type: ignore[union-attr]
        t = a1.call("transferCall", {"agentName": "a2", "mode": "consult"})
        await t.callback("inviteSuccess", "007004")
        await a2.call("multipleVideoPickUp").callback("acceptSuccess", "006023")
        await t.callback("acceptSuccess", "008003")
        # the consulted agent sees and hears a1, the transferring agent still sees the visitor
        assert near(sample_rgb(await frame_of(sfu_of(a2), "a1")), colour_for("a1"))
        assert is_tone(await pitch_of(sfu_of(a2), "a1"), "a1")
        assert near(sample_rgb(await frame_of(sfu_of(a1), "v1")), colour_for("v1"))
        await relay.settled()
        subs = relay._calls[call_id].subs
        assert not [k for k in subs if k[0] == V1], subs  # the visitor receives nobody
        assert (A2, V1) not in subs and (A1, V1) in subs and (A2, A1) in subs
        await removed.wait_for(lambda e: isinstance(e, TrackRemoved) and e.member == "a1", LIMIT)
        assert "a1" not in v.media.members and "a2" not in v.media.members  # type: ignore[union-attr]
        assert "v1" not in sfu_of(a2).members
        return t

    # cancelled: the visitor gets a1 back, a2 leaves
    t = await consult()
    await a1.call("cancelTransfer").callback("cancelSuccess", "006022")
    await t.callback("cancelSuccess", "006022")
    await v.wait_for(CallUpdate, lambda e: e.what == "resumed", within=LIMIT)
    assert near(sample_rgb(await frame_of(v.media, "a1")), colour_for("a1"))
    assert is_tone(await pitch_of(v.media, "a1"), "a1")
    await a2.state("002000", start=m2)

    # completed: the visitor gets a2, and a2 the visitor
    t = await consult()
    await a1.call("completeTransfer").callback("completeSuccess", "005012")
    await v.wait_for(CallUpdate, lambda e: e.what == "transferred", within=LIMIT)
    assert near(sample_rgb(await frame_of(v.media, "a2")), colour_for("a2"))
    assert is_tone(await pitch_of(v.media, "a2"), "a2")
    assert near(sample_rgb(await frame_of(sfu_of(a2), "v1")), colour_for("v1"))
    assert is_tone(await pitch_of(sfu_of(a2), "v1"), "v1")
    await a2.call("videoDisconnect").callback("success", "005014")
    cancelled, completed = ["004003", "006023", "002000"], ["004003", "006023", "006024", "005014"]
    assert [s for s, _ in a2.states.items[m2:]] == cancelled + completed


async def test_a_call_waiting_in_a_teams_queue_through_janus(scene: Scene) -> None:
    """D50 in the SFU mode: while the call waits the visitor subscribes to nobody (a1's feed
    left with it) and stays published; the team's agent made ready picks up, publishes and
    subscribes: colours both ways."""
    from kefu.server.teams import add_team, assign
    from tests.e2e.callkit import AgentSide

    from .test_calls_sfu import MEDIA

    sv = scene.server.services
    a1 = await scene.agent("a1")
    await scene.server.add_agent("a2")
    a2 = AgentSide(scene.server, "a2", scene.tmp_path / "plugin-a2", media=MEDIA)
    scene.stack.push_async_callback(a2.close)
    await a2.start()  # logged in, not ready
    await add_team(sv.store, "loans", now=scene.server.settings.now())
    await assign(sv.store, "loans", "a2")
    v = await scene.visitor("v1")
    c = a1.call("callbackToVisitor", {"visitorName": "v1"})
    call_id = (await c.callback("acceptSuccess", "006011"))["payload"]["callId"]
    assert isinstance(v.media, SfuMember)
    assert near(sample_rgb(await frame_of(v.media, "a1")), colour_for("a1"))
    relay = sv.calls.sfu.relay  # type: ignore[union-attr]
    assert isinstance(relay, SfuRelay)
    removed = Events()
    v.media.events.subscribe(removed)
    await a1.call("transferCall", {"teamName": "loans"}).callback("queued", "005015")
    await v.wait_for(CallUpdate, lambda e: e.what == "queued" and e.position == 1, within=LIMIT)
    await removed.wait_for(lambda e: isinstance(e, TrackRemoved) and e.member == "a1", LIMIT)
    await relay.settled()
    media = relay._calls[call_id]
    assert V1 in media.publishers and not media.subs  # published, nobody to subscribe to
    m2 = len(a2.states.items)
    await a2.set_ready()
    await a2.state("004003", start=m2)
    await a2.call("multipleVideoPickUp").callback("acceptSuccess", "006023")
    await v.wait_for(CallUpdate, lambda e: e.what == "transferred" and e.agent_name == "a2", within=LIMIT)
    assert near(sample_rgb(await frame_of(v.media, "a2")), colour_for("a2"))
    assert near(sample_rgb(await frame_of(sfu_of(a2), "v1")), colour_for("v1"))
    await a2.call("videoDisconnect").callback("success", "005014")
