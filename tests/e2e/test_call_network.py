"""Media that cannot connect ends the call with ``media_unreachable``
(reliability F15), on loopback: a visitor that offers no candidate at all is
unreachable for the hub. The plugin (in this process, real aiortc) reports it
within its bound; the server ends the call, every member is told, the record
says why. The same across real networks: tests/netns."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import pytest

from kefu.visitor import CallUpdate
from tests.conftest import ServerHandle
from tests.plugin.harness import LIMIT

from .callkit import SMALL_MEDIA, AgentSide

pytestmark = [pytest.mark.media, pytest.mark.server_settings(ring_timeout=5.0, call_grace=1.0)]

BOUND = 1.5  # the plugin's media_connect_timeout here


async def test_unreachable_media_ends_the_call_within_the_bound(server: ServerHandle, tmp_path: Path) -> None:
    await server.add_agent("a1")
    agent = AgentSide(server, "a1", tmp_path / "plugin", media=SMALL_MEDIA, media_connect_timeout=BOUND)
    try:
        await agent.start(ready=True)
        # no host candidate, no TURN: nothing of the hub's can reach this visitor
        v = await server.visitor(
            "v1", media=replace(SMALL_MEDIA, host_addresses=()), media_timeout=30.0, on_invite="accept"
        )
        c = agent.call("callbackToVisitor", {"visitorName": "v1"})
        accepted = await c.callback("acceptSuccess", "006011")
        started = time.monotonic()
        call_id = str(accepted["payload"]["callId"])
        ended = await v.wait_for(CallUpdate, lambda e: e.what == "ended", within=BOUND + LIMIT)
        took = time.monotonic() - started
        assert ended.reason == "media_unreachable" and ended.by == "system"
        assert took < BOUND + 3.0, f"the call ended {took:.1f} s after it connected"
        # the agent's SDK: the call is over, and why (both conventions)
        await c.callback("visitorDisconnect", "005003")
        payload = await agent.state("005003")
        assert payload["reason"] == "media_unreachable"
        record = await server.services.calls.get_call(call_id)
        assert record is not None
        assert record["endReason"] == "media_unreachable" and record["endedBy"] == "system"
        media = agent.plugin.media
        assert media is not None
        await media.wait_closed()
        assert call_id not in media.calls
    finally:
        await agent.close()
