"""The plugin records each call it leads and uploads the recording in chunks
during the call (``PUT /api/calls/{id}/recording?offset=N``, ``final=true``
at the end): a short call's recording on the server, read by ``ffprobe``,
lasts as long as the call; a plugin killed with SIGKILL mid-call leaves a
playable recording of all but its last seconds."""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import subprocess
import time
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from kefu.server.schema import audit
from kefu.visitor import MediaStatus
from tests.conftest import ServerHandle
from tests.plugin.harness import LIMIT

from .callkit import SMALL_MEDIA, AgentSide, plugin_process

pytestmark = [
    pytest.mark.media,
    pytest.mark.server_settings(ring_timeout=5.0, call_grace=1.0),
    pytest.mark.skipif(shutil.which("ffprobe") is None, reason="needs ffprobe (Debian ffmpeg)"),
]

RECORDING = replace(SMALL_MEDIA, record=True, record_chunk_seconds=0.5)


def ffprobe(path: Path) -> dict[str, Any]:
    """ffprobe's view of the file: format, streams, and the last packet's end time."""
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_format", "-show_streams", "-of", "json", str(path)],
        capture_output=True,
        check=True,
        timeout=LIMIT,
    )
    info: dict[str, Any] = json.loads(out.stdout)
    packets = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "packet=pts_time", "-of", "csv=p=0", str(path)],
        capture_output=True,
        check=True,
        timeout=LIMIT,
    )
    fields = packets.stdout.decode().replace(",", " ").split()
    times = [float(t) for t in fields if t != "N/A"]
    info["last_packet"] = max(times) if times else 0.0
    return info


async def fetch(server: ServerHandle, path: str, token: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=server.url, timeout=LIMIT) as http:
        return await http.get(path, headers={"Authorization": f"Bearer {token}"})


def seconds(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


async def test_a_short_call_is_recorded_on_the_server_as_long_as_the_call(
    server: ServerHandle, tmp_path: Path
) -> None:
    await server.add_agent("a1")
    a1 = AgentSide(server, "a1", tmp_path / "plugin", media=RECORDING)
    try:
        await a1.start(ready=True)
        v = await server.visitor("v1", on_invite="accept", media=SMALL_MEDIA)
        c = a1.call("callbackToVisitor", {"visitorName": "v1"})
        call_id = (await c.callback("acceptSuccess", "006011"))["payload"]["callId"]
        await v.wait_for(MediaStatus, lambda e: e.status == "connected", within=LIMIT)
        hub = a1.plugin.call_media
        assert hub is not None
        await hub.peer("v1").next_frame("v1", "camera", within=LIMIT)
        await asyncio.sleep(2.0)  # the call's length
        await a1.call("videoDisconnect").callback("success", "005004")
        assert a1.plugin.media is not None
        await asyncio.wait_for(a1.plugin.media.wait_closed(), LIMIT)  # finished and uploaded
        token = await server.login("a1")
        record = (await fetch(server, f"/api/calls/{call_id}", token)).json()
        response = await fetch(server, f"/api/calls/{call_id}/recording", token)
        assert response.status_code == 200 and response.headers["content-type"] == "video/webm"
        arts = (await fetch(server, f"/api/calls/{call_id}/media", token)).json()
        art = next(a for a in arts if a["kind"] == "recording")
        assert art["meta"]["complete"] is True and art["size"] == len(response.content)
        assert response.headers["x-checksum-sha256"] == art["sha256"]
        path = tmp_path / "call.webm"
        path.write_bytes(response.content)
        info = ffprobe(path)
        duration = float(info["format"]["duration"])
        call_length = seconds(record["endedAt"]) - seconds(record["answeredAt"])
        assert abs(duration - call_length) <= 0.5, (duration, call_length)
        titles = sorted(s["tags"].get("title", s["tags"].get("TITLE")) for s in info["streams"])
        assert titles == ["a1 camera", "a1 mic", "v1 camera", "v1 mic"]
        # the plugin keeps no copy once the server has it
        assert not (tmp_path / "plugin" / "recordings" / f"{call_id}.webm").exists()
    finally:
        await a1.close()


async def test_a_transferred_call_is_recorded_in_two_parts_as_long_as_the_call(
    server: ServerHandle, tmp_path: Path
) -> None:
    """Issue 20 (D51), hub mode: a blind transfer moves the hub to a2's plugin, which records
    the rest as part 2; both parts are final, sealed, listed with their SHA-256 in the call
    record, served by ``?part=N``, and their durations add up to the call's within 1 s."""
    sides = []
    for name in ("a1", "a2"):
        await server.add_agent(name)
        sides.append(AgentSide(server, name, tmp_path / f"plugin-{name}", media=RECORDING))
    a1, a2 = sides
    try:
        for side in sides:
            await side.start(ready=True)
        v = await server.visitor("v1", on_invite="accept", media=SMALL_MEDIA)
        c = a1.call("callbackToVisitor", {"visitorName": "v1"})
        call_id = (await c.callback("acceptSuccess", "006011"))["payload"]["callId"]
        await v.wait_for(MediaStatus, lambda e: e.status == "connected", within=LIMIT)
        hub = a1.plugin.call_media
        assert hub is not None
        await hub.peer("v1").next_frame("v1", "camera", within=LIMIT)
        await asyncio.sleep(1.0)  # the first part's length
        t = a1.call("transferCall", {"agentName": "a2"})
        await t.callback("inviteSuccess", "007003")
        await a2.call("multipleVideoPickUp").callback("acceptSuccess", "006023")
        await t.callback("transferSuccess", "005011")
        hub2 = a2.plugin.call_media
        assert hub2 is not None
        await hub2.peer("v1").next_frame("v1", "camera", within=LIMIT)
        await asyncio.sleep(1.0)  # the second part's length
        await a2.call("videoDisconnect").callback("success", "005014")
        for side in sides:
            assert side.plugin.media is not None
            await asyncio.wait_for(side.plugin.media.wait_closed(), LIMIT)  # finished and uploaded
        token = await server.login("a2")
        record = (await fetch(server, f"/api/calls/{call_id}", token)).json()
        parts = record["recordingParts"]
        assert [(p["part"], p["agentName"], p["complete"]) for p in parts] == [
            (1, "a1", True),
            (2, "a2", True),
        ]
        total = 0.0
        for p, who in zip(parts, ("a1", "a2"), strict=True):
            response = await fetch(server, f"/api/calls/{call_id}/recording?part={p['part']}", token)
            assert response.status_code == 200 and response.headers["content-type"] == "video/webm"
            assert response.headers["x-checksum-sha256"] == p["sha256"] and len(response.content) == p["size"]
            path = tmp_path / f"part{p['part']}.webm"
            path.write_bytes(response.content)
            info = ffprobe(path)
            total += float(info["format"]["duration"])
            titles = sorted(s["tags"].get("title", s["tags"].get("TITLE")) for s in info["streams"])
            assert titles == [f"{who} camera", f"{who} mic", "v1 camera", "v1 mic"]
        call_length = seconds(record["endedAt"]) - seconds(record["answeredAt"])
        assert abs(total - call_length) <= 1.0, (total, call_length)
        missing = await fetch(server, f"/api/calls/{call_id}/recording?part=3", token)
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "no_such_media"
        # evidence: every read audited, no part written again
        async with server.services.store.read() as c:
            reads = (
                await c.execute(
                    select(audit.c.object_id).where(audit.c.call_id == call_id, audit.c.action == "read")
                )
            ).scalars()
            assert {p["artifactId"] for p in parts} <= set(reads)
    finally:
        for side in sides:
            await side.close()


async def test_no_record_means_no_recording(server: ServerHandle, tmp_path: Path) -> None:
    await server.add_agent("a1")
    a1 = AgentSide(server, "a1", tmp_path / "plugin", media=SMALL_MEDIA)  # record=False: --no-record
    try:
        await a1.start(ready=True)
        v = await server.visitor("v1", on_invite="accept", media=SMALL_MEDIA)
        c = a1.call("callbackToVisitor", {"visitorName": "v1"})
        call_id = (await c.callback("acceptSuccess", "006011"))["payload"]["callId"]
        await v.wait_for(MediaStatus, lambda e: e.status == "connected", within=LIMIT)
        await a1.call("videoDisconnect").callback("success", "005004")
        assert a1.plugin.media is not None
        await asyncio.wait_for(a1.plugin.media.wait_closed(), LIMIT)
        response = await fetch(server, f"/api/calls/{call_id}/recording", await server.login("a1"))
        assert response.status_code == 404 and response.json()["error"]["code"] == "no_such_media"
    finally:
        await a1.close()


async def test_a_plugin_killed_mid_call_leaves_a_playable_recording(
    server: ServerHandle, tmp_path: Path
) -> None:
    await server.add_agent("a1")
    a1: AgentSide | None = None
    async with plugin_process(server, tmp_path / "plugin", tmp_path / "plugin.log") as plugin:
        proc = plugin.proc
        try:
            a1 = await AgentSide.of_process(server, "a1", plugin.url, plugin.token).start(ready=True)
            v = await server.visitor("v1", on_invite="accept", media=SMALL_MEDIA)
            c = a1.call("callbackToVisitor", {"visitorName": "v1"})
            call_id = (await c.callback("acceptSuccess", "006011"))["payload"]["callId"]
            connected = time.monotonic()
            await v.wait_for(MediaStatus, lambda e: e.status == "connected", within=LIMIT)
            assert v.media is not None
            await v.media.peer.next_frame("a1", "camera", within=LIMIT)
            api_token = await server.login("a1")
            # the call goes on; the server receives the recording as it is made
            await asyncio.sleep(3.0)
            deadline = time.monotonic() + LIMIT
            while True:  # until a few chunks are in (the upload has no event the test could await)
                arts = (await fetch(server, f"/api/calls/{call_id}/media", api_token)).json()
                rec = next((a for a in arts if a["kind"] == "recording"), None)
                if rec is not None and rec["size"] > 20_000:
                    break
                assert time.monotonic() < deadline, arts
                await asyncio.sleep(0.1)
            proc.send_signal(signal.SIGKILL)
            killed = time.monotonic()
            assert await asyncio.wait_for(proc.wait(), LIMIT) == -signal.SIGKILL
            response = await fetch(server, f"/api/calls/{call_id}/recording", api_token)
            assert response.status_code == 200
            arts = (await fetch(server, f"/api/calls/{call_id}/media", api_token)).json()
            assert next(a for a in arts if a["kind"] == "recording")["meta"]["complete"] is False
            path = tmp_path / "killed.webm"
            path.write_bytes(response.content)
            info = ffprobe(path)  # playable: ffprobe reads it, every stream is there
            assert {s["codec_name"] for s in info["streams"]} == {"vp8", "opus"}
            assert len(info["streams"]) == 4
            lasted = killed - connected
            assert info["last_packet"] >= lasted - 3.0, (info["last_packet"], lasted)
        finally:
            if a1 is not None:
                await a1.close()
