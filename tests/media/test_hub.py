"""A three-party call: the agent's hub (A) connected to B and C forwards each
member's media to the other through its MediaRelay."""

from __future__ import annotations

import pytest

from kefu.media import DirectLink, Label, MediaPeer, MediaSettings, open_source, read_counter, sample_rgb

from .conftest import BLUE, GREEN, RED, call, near

pytestmark = pytest.mark.media


async def test_the_hub_forwards_b_to_c_and_c_to_b(settings: MediaSettings) -> None:
    async with call(settings, ("B", GREEN), ("C", RED)) as c:
        b, cc = c.members["B"], c.members["C"]

        at_c = await cc.peer.next_frame("B")  # B's camera, relayed by A
        assert near(sample_rgb(at_c), GREEN)
        at_b = await b.peer.next_frame("C")
        assert near(sample_rgb(at_b), RED)
        assert read_counter(await b.peer.next_frame("C")) > read_counter(at_b)
        assert near(sample_rgb(await b.peer.next_frame("agent")), BLUE)  # and A's own
        assert near(sample_rgb(await cc.peer.next_frame("agent")), BLUE)
        assert near(sample_rgb(await c.hub.peer("B").next_frame("B")), GREEN)
        assert near(sample_rgb(await c.hub.peer("C").next_frame("C")), RED)

        # audio is forwarded too
        await b.peer.next_frame("C", "mic")
        await cc.peer.next_frame("B", "mic")
        assert {r.label for r in b.peer.received} == {
            Label("agent", "camera"),
            Label("agent", "mic"),
            Label("C", "camera"),
            Label("C", "mic"),
        }
        assert c.hub.members == ("B", "C")

        # C leaves: B stops receiving C's tracks, A's go on
        await c.links.pop("C").close()
        await c.hub.remove_member("C")
        await c.links["B"].settled()
        assert {r.label.member for r in b.peer.received} == {"agent"}
        assert near(sample_rgb(await b.peer.next_frame("agent")), BLUE)


async def test_a_member_cannot_pass_its_track_off_as_another_members(settings: MediaSettings) -> None:
    async with call(settings) as c:
        liar = MediaPeer(settings, local="B", remote="agent", offerer=False)
        source = open_source(settings, "B", rgb=GREEN)
        try:
            liar.send(source.video, "camera", member="C")  # labelled kefu.camera.C
            link = DirectLink(c.hub.add_member("B"), liar)
            frame = await c.hub.peer("B").next_frame("B")  # the hub files it under B
            assert near(sample_rgb(frame), GREEN)
            assert {r.label for r in c.hub.peer("B").received} == {Label("B", "camera")}
            await link.close()
        finally:
            await liar.close()
            source.stop()
