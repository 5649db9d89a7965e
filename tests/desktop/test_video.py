"""The window's video and its control bar.

Video: a real call's media — the agent's :class:`~kefu.media.MediaHub` and
the members' :class:`~kefu.media.MediaMember`, real peer connections on
127.0.0.1 (``DirectLink`` carries the signalling the server carries) — painted
by the window; the widget is grabbed and the pattern's colour looked for.

Control bar: each button's answer is the answer an SDK gets from the same
API in the same situation, and the SDK is told of it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image as PILImage
from PySide6.QtGui import QImage

from kefu.media import MediaSettings
from kefu.plugin.desktop import Desktop

from ..media.conftest import BLUE, GREEN, RED, call, near
from ..plugin.harness import Raw, login_url, wait_for

pytestmark = [pytest.mark.desktop, pytest.mark.media]

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


@pytest.fixture
def settings() -> MediaSettings:
    return MediaSettings(video_width=320, video_height=240, fps=15, close_timeout=1.0, watchdog_interval=0.05)


def pil(image: QImage) -> PILImage.Image:
    rgb = image.convertToFormat(QImage.Format.Format_RGB888)
    data = bytes(rgb.constBits())  # type: ignore[call-overload]
    return PILImage.frombuffer("RGB", (rgb.width(), rgb.height()), data, "raw", "RGB", rgb.bytesPerLine(), 1)


def share_of(
    image: PILImage.Image, colour: tuple[int, int, int], box: tuple[int, int, int, int] | None = None
) -> float:
    """The share of the pixels of ``image`` (or of ``box`` in it) near ``colour``."""
    part = image.crop(box) if box is not None else image
    small = part.resize((64, 48), PILImage.Resampling.NEAREST)
    raw = small.tobytes()
    pixels = [(raw[i], raw[i + 1], raw[i + 2]) for i in range(0, len(raw), 3)]
    return sum(near(p, colour, 30) for p in pixels) / len(pixels)


async def until_tiles(desktop: Desktop, *keys: tuple[str, str]) -> None:
    """Until every tile ``keys`` names has painted a frame (driven by the window's own refresh)."""
    while not all((t := desktop.tile(*k)) is not None and t.image is not None for k in keys):
        await wait_for(desktop.frame_shown())


async def test_two_party_the_visitor_large_and_the_agent_small(
    desktop: Desktop, settings: MediaSettings
) -> None:
    desktop.plugin.window.set_size(800, 600)
    async with call(settings, ("v1", GREEN)) as c:
        desktop.media = lambda: c.hub
        await until_tiles(desktop, ("v1", "camera"), ("agent", "camera"))
        view = desktop.window.video
        ARTIFACTS.mkdir(exist_ok=True)
        assert desktop.grab().save(str(ARTIFACTS / "desktop-two-party.png"))
        image = pil(view.grab().toImage())
        w, h = image.size
        # the visitor's test pattern fills the view; the agent's self view (blue) is small, bottom right
        assert share_of(image, GREEN, (0, 0, w // 2, h // 2)) > 0.15
        assert share_of(image, BLUE, (w * 3 // 4, h * 3 // 4, w, h)) > 0.1
        assert share_of(image, BLUE, (0, 0, w // 2, h // 2)) < 0.02
        # the window keeps up: a new frame of the visitor is converted again
        frames = desktop.tile("v1", "camera").frames  # type: ignore[union-attr]
        await wait_for(desktop.frame_shown())
        while desktop.tile("v1", "camera").frames == frames:  # type: ignore[union-attr]
            await wait_for(desktop.frame_shown())
        # the call ends: no tiles
        desktop.media = lambda: None
        desktop.refresh_video()
        assert desktop.window.video.tiles == []


async def test_three_party_tiles_and_a_screenshot(desktop: Desktop, settings: MediaSettings) -> None:
    desktop.plugin.window.set_size(960, 720)
    async with call(settings, ("v1", GREEN), ("a2", RED)) as c:
        desktop.media = lambda: c.hub
        await until_tiles(desktop, ("v1", "camera"), ("a2", "camera"), ("agent", "camera"))
        assert desktop.window.video.kinds == ["tile", "tile", "tile"]
        shot = desktop.grab()
        ARTIFACTS.mkdir(exist_ok=True)
        path = ARTIFACTS / "desktop-three-party.png"
        assert shot.save(str(path))
        image = pil(desktop.window.video.grab().toImage())
        for colour in (GREEN, RED, BLUE):
            assert share_of(image, colour) > 0.05, colour
        # the visitor shares the screen: it goes large, the cameras small
        c.members["v1"].start_share()
        await until_tiles(desktop, ("v1", "screen"))
        assert desktop.window.video.kinds[0] == "main"
        assert desktop.window.video.kinds.count("main") == 1
        shot = desktop.grab()
        assert shot.save(str(ARTIFACTS / "desktop-three-party-share.png"))


async def test_mute_and_camera_pause_the_agents_tracks(desktop: Desktop, settings: MediaSettings) -> None:
    async with call(settings, ("v1", GREEN)) as c:
        desktop.media = lambda: c.hub
        assert c.hub.source is not None
        audio, video = c.hub.source.audio, c.hub.source.video
        actions = desktop.window.actions_by_name
        actions["mute"].trigger()
        assert audio.paused and not video.paused  # type: ignore[attr-defined]
        assert actions["mute"].isChecked() and actions["mute"].text() == "Unmute"
        actions["camera"].trigger()
        assert video.paused  # type: ignore[attr-defined]
        actions["mute"].trigger()
        actions["camera"].trigger()
        assert not audio.paused and not video.paused  # type: ignore[attr-defined]
        # the visitor sees the agent's camera again
        await c.members["v1"].peer.next_frame("agent", within=5.0)


@pytest.mark.parametrize("mark", ["videoDisconnect", "snapshot", "takePhoto", "inviteShare"])
async def test_each_button_answers_as_its_api_and_the_sdk_is_told(desktop: Desktop, mark: str) -> None:
    plugin = desktop.plugin
    async with Raw.connect(plugin) as raw:
        url = login_url(plugin.settings.server_origin, "a1")
        assert (await raw.call("l", "startLogin", {"data": {"url": url}}))["subMark"] == "success"
        by_sdk = await raw.call("sdk", mark)
        desktop.window.actions_by_name[mark].trigger()
        told = await raw.push("client", "windowAction")
        by_window = desktop.outcomes[-1]
        assert told["payload"] == by_window
        assert by_window["mark"] == mark
        assert by_window["subMark"] == by_sdk["subMark"]
        assert (by_window.get("error") or {}).get("code") == (by_sdk.get("error") or {}).get("code")
        assert by_window["state"] == by_sdk["state"]
        assert mark in desktop.window.message_label.text()
