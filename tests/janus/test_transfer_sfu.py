"""A blind call transfer in the SFU mode (issue 20): the same transfer engine as the hub
mode; the media server stays, the target publishes and subscribes, the transferring
agent's feed goes (docs/calls.md, "Transfers"). Checked by colour both ways."""

from __future__ import annotations

import pytest

from kefu.media import SfuMember, colour_for, sample_rgb
from kefu.plugin.media import SfuCall
from tests.e2e.test_call_media import near

from .test_calls_sfu import Scene, frame_of, scene, sfu_of

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
