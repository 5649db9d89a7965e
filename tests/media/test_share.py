"""inviteShare: the visitor's screen arrives as a second video track on the
same peer connection (renegotiation), and its end is seen."""

from __future__ import annotations

import pytest

from kefu.media import MediaError, MediaSettings, TrackAdded, TrackRemoved, read_counter, sample_rgb
from kefu.media.pattern import SCREEN_RGB

from .conftest import GREEN, call, near

pytestmark = pytest.mark.media


def is_screen(rgb: tuple[int, int, int]) -> bool:
    """Light and grey, as the synthetic screen; no camera pattern colour is."""
    return min(rgb) > 180 and max(rgb) - min(rgb) < 20


async def test_screen_share_arrives_by_renegotiation_and_its_end_is_seen(settings: MediaSettings) -> None:
    async with call(settings, ("v1", GREEN)) as c:
        hub_side, member, link = c.hub.peer("v1"), c.members["v1"], c.links["v1"]
        await hub_side.next_frame()
        exchanges = link.exchanges
        transports = len(hub_side.pc.getTransceivers())

        member.start_share()
        screen = await hub_side.next_frame("v1", "screen")
        assert is_screen(sample_rgb(screen)) and near(sample_rgb(screen), SCREEN_RGB, 30)
        assert read_counter(screen) >= 0
        # still the same peer connection, renegotiated: one more video m-line
        assert c.hub.peer("v1") is hub_side and link.exchanges > exchanges
        assert len(hub_side.pc.getTransceivers()) == transports + 1
        added = await c.events.wait_for(lambda e: isinstance(e, TrackAdded) and e.role == "screen")
        assert added == TrackAdded("v1", "v1", "screen", "video")
        camera = await hub_side.next_frame("v1", "camera")  # the camera goes on beside it
        assert near(sample_rgb(camera), GREEN)
        with pytest.raises(MediaError):
            member.start_share()  # one share at a time

        member.stop_share()
        removed = await c.events.wait_for(lambda e: isinstance(e, TrackRemoved))
        assert removed == TrackRemoved("v1", "v1", "screen", "video")
        assert hub_side.received_track("v1", "screen") is None
        assert near(sample_rgb(await hub_side.next_frame("v1", "camera")), GREEN)

        member.start_share()  # again: a fresh m-line, since aiortc ends a used sender
        assert is_screen(sample_rgb(await hub_side.next_frame("v1", "screen")))
