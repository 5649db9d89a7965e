"""Fixtures of the visitor tests: the scripted server side of ``/ws/visitor``
(:mod:`tests.visitor.peer`) and small, fast media settings."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from kefu.media import MediaSettings

from .peer import ScriptedServer


@pytest.fixture
async def scripted() -> AsyncIterator[ScriptedServer]:
    peer = ScriptedServer()
    await peer.start()
    try:
        yield peer
    finally:
        await peer.stop()


@pytest.fixture
def media_settings() -> MediaSettings:
    """320x240 at 15 fps, a 0.3 s stream-offline threshold looked at every 30 ms."""
    return MediaSettings(
        video_width=320,
        video_height=240,
        fps=15,
        photo_width=640,
        photo_height=360,
        close_timeout=1.0,
        offline_threshold=0.3,
        watchdog_interval=0.03,
    )
