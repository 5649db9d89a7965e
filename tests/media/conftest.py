"""Media test helpers: a call between the agent's hub and members, in one
process, over real peer connections on 127.0.0.1 (kefu.media.DirectLink
carries the signalling the server carries in production).

Frames are small (320x240 at 15 fps) so a test costs little CPU; every wait
is bounded (``asyncio.wait_for`` or a timeout of the helper awaited).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field

import pytest

from kefu.media import DirectLink, MediaEvent, MediaHub, MediaMember, MediaPeer, MediaSettings, open_source
from tests.conftest import scaled

BLUE = (30, 90, 200)  # the agent
GREEN = (40, 170, 60)  # visitor v1
RED = (200, 60, 50)  # third member


def near(rgb: tuple[int, int, int], expected: tuple[int, int, int], tolerance: int = 20) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(rgb, expected, strict=True))


@pytest.fixture
def settings() -> MediaSettings:
    return MediaSettings(
        video_width=320,
        video_height=240,
        fps=15,
        photo_width=1280,
        photo_height=720,
        close_timeout=1.0,
        watchdog_interval=0.05,
    )


@dataclass
class Events:
    """Every event of an emitter, and a way to await one."""

    seen: list[MediaEvent] = field(default_factory=list)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    def __call__(self, event: MediaEvent) -> None:
        self.seen.append(event)
        self._changed.set()

    def of(self, kind: type) -> list[MediaEvent]:
        return [e for e in self.seen if isinstance(e, kind)]

    async def wait_for(self, test: Callable[[MediaEvent], bool], within: float = scaled(5.0)) -> MediaEvent:
        async def scan() -> MediaEvent:
            while True:
                for e in self.seen:
                    if test(e):
                        return e
                self._changed.clear()
                await self._changed.wait()

        return await asyncio.wait_for(scan(), within)


@dataclass
class Call:
    hub: MediaHub
    members: dict[str, MediaMember]
    links: dict[str, DirectLink]
    events: Events

    async def join(self, settings: MediaSettings, name: str, rgb: tuple[int, int, int]) -> MediaMember:
        """``name`` joins with a camera of colour ``rgb``; the hub offers at once."""
        member = MediaMember(
            settings,
            local=name,
            hub=self.hub.local,
            call_id=self.hub.call_id,
            source=open_source(settings, name, rgb=rgb),
        )
        self.members[name] = member
        self.links[name] = DirectLink(self.hub.add_member(name), member.peer)
        return member


@asynccontextmanager
async def call(settings: MediaSettings, *members: tuple[str, tuple[int, int, int]]) -> AsyncIterator[Call]:
    """The agent (blue) as hub, and ``members`` (name, colour) joined in order."""
    source = open_source(settings, "agent", rgb=BLUE)
    hub = MediaHub(settings, call_id="call-1", local="agent", source=source)
    events = Events()
    hub.events.subscribe(events)
    c = Call(hub, {}, {}, events)
    async with AsyncExitStack() as stack:
        stack.callback(source.stop)
        stack.push_async_callback(hub.close)
        try:
            for name, rgb in members:
                await c.join(settings, name, rgb)
            yield c
        finally:
            for link in c.links.values():
                await link.close()
            for m in c.members.values():
                await m.close()
                m.source.stop()


@asynccontextmanager
async def sending_pair(
    settings: MediaSettings, *, sender: dict[str, bool] | None = None, **receiver: bool
) -> AsyncIterator[MediaPeer]:
    """``a`` (a :class:`MediaPeer` made with the ``sender`` options) sends its camera and
    microphone to the returned receiver ``b`` (made with the ``receiver`` options, e.g.
    ``audio_on_demand``)."""
    source = open_source(settings, "a")
    a = MediaPeer(settings, local="a", remote="b", offerer=True, **(sender or {}))
    b = MediaPeer(settings, local="b", remote="a", offerer=False, **receiver)
    a.send(source.video, "camera")
    a.send(source.audio, "mic")
    link = DirectLink(a, b)
    try:
        yield b
    finally:
        await link.close()
        await a.close()
        await b.close()
        source.stop()


#: a second of the sending pair's media: its camera's frames (15 fps) and its microphone's (50 a second)
SECOND_OF = {"camera": 15, "mic": 50}


async def a_second_of(b: MediaPeer, track: str) -> None:
    """A second of ``a``'s call to ``b`` (:func:`sending_pair`), measured by ``track``'s frames
    decoded meanwhile (the other track is sent all the while)."""
    for _ in range(SECOND_OF[track]):
        await b.next_frame("a", track)
