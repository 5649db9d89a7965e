from __future__ import annotations

import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from kefu.media import MediaSettings
from tests.conftest import Clock, ServerHandle, fast_settings

from .kit import Janus, available
from .netns import HOST, Namespace, unavailable


@pytest.fixture
async def janus(tmp_path: Path) -> AsyncIterator[Janus]:
    why = available()
    if why:
        pytest.skip(why)
    j = Janus(tmp_path / "janus")
    await j.start()
    try:
        yield j
    finally:
        await j.stop()


@dataclass
class DataCentre:
    """A network namespace with Janus and a kefu server in it (the test's thread inside)."""

    ns: Namespace
    janus: Janus
    server: ServerHandle
    media: MediaSettings


@pytest.fixture
async def dc(tmp_path: Path) -> AsyncIterator[DataCentre]:
    """Media through Janus: everything the test makes lives in ``kefu-sfu-<random>`` (SQLite:
    the host's PostgreSQL is not in the namespace)."""
    why = unavailable() or available()
    if why:
        pytest.skip(why)
    ns = Namespace()
    ns.create()
    ns.enter()
    try:
        janus = Janus(tmp_path / "janus")
        janus.prefix = ns.prefix
        await janus.start()
        server = ServerHandle(
            fast_settings(
                tmp_path / "data",
                Clock(),
                ring_timeout=5.0,
                call_grace=0.2,
                janus_url=janus.url,
                janus_api_secret=janus.api_secret,
                janus_admin_key=janus.admin_key,
                janus_recordings=janus.recordings,
                janus_timeout=3.0,
                recording_tile=(320, 240),
                media_keys=(os.urandom(32),),  # evidence at rest: the recordings sealed
            )
        )
        try:
            await server.start()
            media = MediaSettings(
                host_addresses=(HOST,),
                video_width=320,
                video_height=240,
                fps=15,
                close_timeout=1.0,
                watchdog_interval=0.05,
            )
            yield DataCentre(ns, janus, server, media)
        finally:
            await server.stop()
            await janus.stop()
    finally:
        ns.leave()
        ns.delete()
